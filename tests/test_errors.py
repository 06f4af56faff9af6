"""One base class for the errors people see, so that the CLI catches them in one place."""

import importlib
import inspect
import pkgutil

import portraitcolor
from portraitcolor.errors import PortraitcolorError, UsageError
from tests.conftest import default_sigint


def _error_classes():
    for module_info in pkgutil.iter_modules(portraitcolor.__path__):
        module = importlib.import_module(f"portraitcolor.{module_info.name}")
        for name, value in vars(module).items():
            # Errors by name: TrainingInterrupted is Ctrl-C's path (exit 130), not an error.
            if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == module.__name__ and name.endswith("Error"):
                yield name, value


def test_every_error_of_the_package_is_a_portraitcolor_error():
    classes = dict(_error_classes())
    assert len(classes) >= 10
    assert [name for name, value in classes.items() if not issubclass(value, PortraitcolorError)] == []


def test_usage_errors_are_the_ones_that_exit_2():
    from portraitcolor.runs import TrainingError, TrainingUsageError
    from portraitcolor.schedule import ScheduleError

    assert issubclass(ScheduleError, UsageError) and issubclass(TrainingUsageError, UsageError)
    assert not issubclass(TrainingError, UsageError)


def test_an_interrupt_landing_in_a_finalizer_is_delivered_again_silently():
    """Ctrl-C / SIGTERM raised inside a weakref callback (garbage collection) is dropped by Python
    with an "Exception ignored" traceback; the CLI delivers it again to the job instead."""
    import subprocess
    import sys

    code = (
        "import time, weakref\n"
        "from portraitcolor import terminal\n"
        "terminal.redeliver_interrupts_lost_in_finalizers()\n"
        "class Resource: pass\n"
        "def finalizer(_):\n    raise KeyboardInterrupt\n"
        "resource = Resource(); ref = weakref.ref(resource, finalizer)\n"
        # Short sleeps up to a minute: delivered at the first point after the redelivery
        # timer fires, however late a loaded machine runs it.
        "try:\n    del resource\n    for _ in range(1200):\n        time.sleep(0.05)\n    print('lost')\n"
        "except KeyboardInterrupt:\n    print('delivered')\n"
    )
    # default_sigint: as from a terminal, also when the suite itself runs in the background.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, preexec_fn=default_sigint)
    assert result.stdout.strip() == "delivered"
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
