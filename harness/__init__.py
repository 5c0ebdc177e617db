"""pollbench's harness: PTX builder, emulator, compiler, GPU runtime, measurement, CLI."""

__version__ = "0.1.0"
