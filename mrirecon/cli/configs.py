"""Where mrirecon's configs are: its conf/ folder (in the wheel or the source checkout) and the
plug-ins' conf/ folders after it, on Hydra's search path; the files and options of a group."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from mrirecon.registry import plugin_conf_dirs


def config_dir() -> Path:
    """conf/ inside an installed package (wheel), else the source checkout's top-level conf/."""
    here = Path(__file__).resolve().parent.parent  # the mrirecon package
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "reconstruct.yaml").is_file():
            return candidate
    raise RuntimeError(f"mrirecon: configuration folder not found next to {here}")


def config_dirs() -> list[Path]:
    """mrirecon's conf/ and then the plug-ins' conf/ folders (MRIRECON_PLUGINS: mrirecon/registry.py),
    in the order Hydra searches them (`PluginConfigs`)."""
    return [config_dir(), *plugin_conf_dirs()]


def config_file(group: str, option: str) -> Path:
    """The file of `group=option`: <group>/<option>.yaml in the first config folder holding it."""
    candidates = [folder / group / f"{option}.yaml" for folder in config_dirs()]
    return next((path for path in candidates if path.is_file()), candidates[0])


def group_options(group: str) -> list[str]:
    """The options of config group `group` (its <group>/*.yaml in every config folder), [] if it
    is no group."""
    if not group.isidentifier():
        return []
    folders = [folder / group for folder in config_dirs() if (folder / group).is_dir()]
    return sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})


class PluginConfigs(SearchPathPlugin):
    """Hydra search-path plug-in: the plug-ins' conf/ folders after mrirecon's own (`config_dirs`)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for folder in plugin_conf_dirs():
            search_path.append(provider="mrirecon-plugin", path=f"file://{folder}")


def use_plugin_configs() -> None:
    """Let Hydra find the plug-ins' configs (idempotent; before composing or running Hydra)."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(PluginConfigs)
