"""The CPU emulator for builder modules (architecture §3)."""

from harness.emu.machine import EmuError, EmuHang, Emulator, LaunchResult
from harness.emu.memory import EmuMemoryError

__all__ = ["Emulator", "EmuError", "EmuHang", "EmuMemoryError", "LaunchResult"]
