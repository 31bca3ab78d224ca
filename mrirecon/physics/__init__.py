"""mrirecon.physics"""
