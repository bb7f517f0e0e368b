"""Terminal drivers: one package per family, yielding ``Punch`` values."""
