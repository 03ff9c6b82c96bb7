"""``ideal``: no tuner of its own; ccemu's search over every algorithm and parameter set (``best``).

``choose`` returns ``ccemu_algorithm="best"`` and ``ccemu_protocol="auto"``: :func:`collectives.simulate`
times every registered algorithm (:mod:`collectives.select`) in every protocol regime and keeps the
fastest. There is no model of its own, so ``predicted_us`` is ``None`` and the cost table is empty: the
emulated time is the prediction. It reads no environment overrides.
"""

from __future__ import annotations

from .. import __version__
from . import Choice, check_call, check_env, check_version

NAME = "ideal"


class IdealModel:
    name = NAME
    versions = (__version__,)          # ccemu's own version: the search is ccemu's
    default_version = __version__
    algorithms = ("best",)
    collectives = None      # every registered collective
    protocols = ("auto",)
    env_keys = ()

    def choose(self, collective, nbytes, topology, version=None, env=None) -> Choice:
        """ccemu's best schedule, left to :func:`collectives.simulate` (``algorithm="best"``).

        >>> from topologies import preset
        >>> c = IDEAL.choose("allreduce", 1 << 20, preset("atlas800t-a2"))
        >>> c.ccemu_algorithm, c.ccemu_protocol, c.predicted_us
        ('best', 'auto', None)
        """
        check_call(collective, nbytes)
        nbytes = int(nbytes)
        version = check_version(self, version)
        check_env(self, env)
        return Choice(self.name, version, collective, nbytes, "best", "auto", None, None, [], "best", {}, "auto",
                      True, "ccemu's search over every algorithm and protocol")


IDEAL = IdealModel()
