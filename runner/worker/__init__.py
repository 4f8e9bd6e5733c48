"""The part of Airlock that runs inside the sandbox.

It imports nothing host-only (no docker, no rich, no controller): the image carries this
package alone, under a stub `runner` package. Start it with `python -m runner.worker`.
"""

WORKER_VERSION = "1"
