"""Importing expkit changes nothing in the process: no config schemas in Hydra's
ConfigStore, TensorBoard's own checksum function, no exit handler, no signal handler.
The entry points ask for those through ``expkit.entry.prepare``."""
from __future__ import annotations

import subprocess
import sys
import textwrap

CHECK = textwrap.dedent("""
    import atexit, importlib, pkgutil, signal
    # what expkit's modules import from elsewhere, first: their own import-time effects are not ours
    import hydra, hydra.utils, omegaconf, numpy, torch, torch.distributed, torchvision  # noqa: F401
    import torch.utils.tensorboard, torch.distributed.elastic.multiprocessing  # noqa: F401
    from hydra.core.config_store import ConfigStore
    from tensorboard.summary.writer import record_writer

    crc, exit_handlers = record_writer.masked_crc32c, atexit._ncallbacks()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)}
    groups = set(ConfigStore.instance().repo)

    import expkit
    names = [m.name for m in pkgutil.walk_packages(expkit.__path__, "expkit.") if not m.name.endswith("__main__")]
    for name in names:
        importlib.import_module(name)

    assert len(names) > 30, names
    assert set(ConfigStore.instance().repo) == groups, set(ConfigStore.instance().repo) - groups
    assert record_writer.masked_crc32c is crc, record_writer.masked_crc32c
    assert atexit._ncallbacks() == exit_handlers, "an exit handler was registered"
    assert {s: signal.getsignal(s) for s in handlers} == handlers, "a signal handler was installed"

    from expkit.entry import prepare  # and prepare() does each of them
    prepare()
    assert set(ConfigStore.instance().repo) != groups
    assert record_writer.masked_crc32c is not crc
    assert atexit._ncallbacks() == exit_handlers + 1
    assert signal.getsignal(signal.SIGTERM) is not handlers[signal.SIGTERM]
    print("clean")
""")


def test_importing_every_expkit_module_registers_patches_and_installs_nothing():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr[-4000:]
