"""``spaces.GPU`` when the Space runs on ZeroGPU, else a decorator that changes nothing.

Imported first by the package: ZeroGPU needs ``spaces`` imported before torch initialises CUDA."""

try:  # ZeroGPU needs ``spaces`` imported before torch initialises CUDA
    import spaces

    GPU = spaces.GPU
except ImportError:  # not on a Space: run the same functions as they are

    def GPU(task=None, **_options):
        return task if callable(task) else (lambda fn: fn)

