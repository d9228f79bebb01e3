"""Mobility as arrays: every device of one mobility kind moved at once, one simulated second per step.

:class:`Mobility` is the model's mobility layer. Each step it moves

- the devices of a **vectorised kind** together, one :class:`Fleet` per kind: the state that changes
  (distance flown, heading, orbit phase …) is one array per quantity, a step is a few numpy operations
  over all of them, and the new positions go into Mesa's ``ContinuousSpace`` in one assignment to its
  ``agent_positions`` array (rows looked up once per change of the space's population; a fleet keeps
  its agents in the space's row order, so they are usually one slice of it);
- every other device through its own ``move(dt_s)``, one by one in id order, after the fleets (a
  user-written device class with its own ``move()`` keeps working unchanged).

Fixed devices (the base ``move()``, which does nothing) are not visited at all. Before, every device's
``move()`` ran in id order; the order within and between fleets changes nothing, as a fleet agent's
motion depends only on its own state (and, for :class:`OrbitFleet`, on a leader the step does not move).

A device class opts in with the class attribute ``mobility_fleet`` (the :class:`Fleet` subclass that
does its ``move()``); a subclass that overrides ``move`` or any other method the fleet does the work of
(:attr:`Fleet.replaces`) moves itself instead, and so does a device that is not an agent of the model's
space. The agent keeps its scalar ``move()``: it is the reference the fleets are tested against
(``tests/twin/test_mobility.py``) and what runs with ``Mobility(per_agent=True)``. Attributes a fleet
holds as arrays are :class:`FleetField` descriptors on the agent class: a plain attribute until the
agent is seated in a fleet, the fleet's row afterwards, so ``drone.travelled_m`` or ``taxi.heading``
read and write the same state whichever moves the agent.

Fleets here: :class:`RouteFleet` (out and back along a polyline: inspection drones, factory robots),
:class:`StreetFleet` (a Manhattan street grid with random turns at intersections: robotaxis, delivery
vans, waste trucks) and
:class:`OrbitFleet` (circling a leader agent: herding drones). Herds, which are not devices and walk in
scheduled events, are moved as arrays by ``agents.herd.HerdFlock`` with the helpers of this module.

Random turns use **counter-based streams** (:func:`counter_uniforms`): draw ``k`` of an agent's stream
is a pure function of its 64-bit key and ``k``, so a taxi's path does not depend on the other taxis,
their order, or on whether it is moved by a fleet or by its own ``move()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, overload

import numpy as np

from twin.rng import counter_uniforms

SEAT = "_mobility_seat"
"""Instance attribute holding ``(fleet, row)`` of an agent seated in a fleet."""

HEADINGS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
"""Unit vectors of the street headings 0 east, 1 north, 2 west, 3 south (turning left adds 1)."""

TURN_PROBS = np.array([0.6, 0.2, 0.2])
"""At an intersection: straight on, left, right (options the map's edge forbids get no share)."""


class FleetField[T]:
    """An agent attribute that lives in its fleet's state array while the agent is seated in a fleet.

    Unseated it is a plain instance attribute; seated, reading gives the fleet row's value (a Python
    scalar, or a copy for a row of a 2-D array) and writing stores into the row.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.slot = f"_{name}_unseated"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> FleetField[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        state = vars(obj)
        seat = state.get(SEAT)
        if seat is None:
            try:
                return state[self.slot]
            except KeyError:
                raise AttributeError(
                    f"{type(obj).__name__!r} object has no attribute {self.name!r}"
                ) from None
        fleet, row = seat
        value = fleet.state[self.name][row]
        return value.item() if value.ndim == 0 else value.copy()

    def __set__(self, obj: object, value: T) -> None:
        state = vars(obj)
        seat = state.get(SEAT)
        if seat is None:
            state[self.slot] = value
        else:
            fleet, row = seat
            fleet.state[self.name][row] = value


def space_rows(space: Any, agents: Sequence[Any]) -> np.ndarray:
    """Rows of ``agents`` in ``space.agent_positions`` (Mesa's ``ContinuousSpace``)."""
    index = space._agent_to_index
    return np.fromiter((index[a] for a in agents), dtype=np.intp, count=len(agents))


def in_space(agent: Any, space: Any) -> bool:
    """Whether ``agent`` is an agent of ``space`` (its position is a row of the space's array)."""
    return agent in space._agent_to_index and getattr(agent, "space", None) is space


def write_positions(space: Any, rows: np.ndarray | slice, xy: np.ndarray, agents: Sequence[Any]) -> None:
    """Store ``xy`` (one row per agent) in the space at once, with Mesa's bounds rule.

    As ``ContinuousSpaceAgent.position = …``: a point outside the space is wrapped on a torus and
    refused otherwise (``ValueError`` naming the first such agent; nothing is stored then).
    """
    low, high = space.dimensions[:, 0], space.dimensions[:, 1]
    within = (xy >= low) & (xy <= high)
    if not within.all():  # rare: find the rows (NaN is outside too, as for Mesa)
        outside = ~within.all(axis=1)
        if not space.torus:
            first = int(np.flatnonzero(outside)[0])
            name = getattr(agents[first], "agent_id", agents[first])
            raise ValueError(f"point {xy[first]} of {name} is outside the bounds of the space")
        xy[outside] = low + np.mod(xy[outside] - low, space.size)
    space.agent_positions[rows] = xy


def _as_slice(rows: np.ndarray) -> np.ndarray | slice:
    """``rows`` as a slice when they are consecutive (agents added one after the other): no gather."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and (np.diff(rows) == 1).all():
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


class Fleet(ABC):
    """Agents of one mobility kind, moved together; their changing state is :attr:`state` (arrays)."""

    replaces: ClassVar[tuple[str, ...]] = ("move",)
    """Agent methods whose work the fleet does: a class overriding one of them moves itself."""

    def __init__(self, space: Any, agents: Sequence[Any]) -> None:
        self.space = space
        self.agents = list(agents)
        self.state: dict[str, np.ndarray] = {}
        self._rows: np.ndarray | slice = slice(0, 0)
        self._rows_for = -1  # the space's population the rows were looked up for

    @classmethod
    def accepts(cls, agent: Any, space: Any) -> bool:
        """Whether the fleet can move ``agent`` (beyond being an agent of ``space``)."""
        return True

    def seat(self, state: dict[str, np.ndarray]) -> None:
        """Take ``state`` (one row per agent, read from the agents) and seat every agent in its row."""
        self.state = state
        for row, agent in enumerate(self.agents):
            vars(agent)[SEAT] = (self, row)

    def release(self) -> None:
        """Give every agent its state back as plain attributes (before the agents are planned again)."""
        values = {name: [getattr(a, name) for a in self.agents] for name in self.state}
        for row, agent in enumerate(self.agents):
            if vars(agent).get(SEAT, (None,))[0] is self:
                del vars(agent)[SEAT]
                for name, column in values.items():
                    setattr(agent, name, column[row])

    def rows(self) -> np.ndarray | slice:
        """The agents' rows in the space, a slice if consecutive (looked up when its population changed)."""
        population = len(self.space._agent_to_index)
        if population != self._rows_for:
            self._rows, self._rows_for = _as_slice(space_rows(self.space, self.agents)), population
        return self._rows

    def positions(self) -> np.ndarray:
        """The agents' positions ``(N, 2)`` (a copy)."""
        return np.array(self.space.agent_positions[self.rows()])

    def place(self, xy: np.ndarray) -> None:
        """Store the agents' new positions at once."""
        write_positions(self.space, self.rows(), xy, self.agents)

    @abstractmethod
    def move(self, dt_s: float) -> None:
        """Move every agent of the fleet ``dt_s`` seconds."""


class Stationary(Fleet):
    """Devices that never move (the base ``move()``): not visited at all."""

    def move(self, dt_s: float) -> None:
        """Nothing moves."""


def fleet_kind(agent: Any, space: Any) -> type[Fleet] | None:
    """The fleet that moves ``agent``, or ``None`` when it moves itself (its own ``move()``)."""
    cls = type(agent)
    kind = getattr(cls, "mobility_fleet", None)
    if kind is None or not in_space(agent, space):
        return None
    owner = next(c for c in cls.__mro__ if "mobility_fleet" in vars(c))
    if any(
        name in vars(agent) or getattr(cls, name, None) is not getattr(owner, name, None)
        for name in kind.replaces
    ):
        return None  # a subclass (or this very agent) moves in its own way
    return kind if kind.accepts(agent, space) else None


class Mobility:
    """The model's mobility layer (module docstring): fleets as arrays, then the devices that move alone.

    Devices are grouped when the model's device list or the space's population changes. A ``move``
    assigned to one device instance afterwards is seen after :meth:`invalidate`.
    """

    def __init__(self, space: Any, *, per_agent: bool = False) -> None:
        self.space = space
        self.per_agent = per_agent
        """Move every device through its own ``move()``, one by one (the reference; benchmarks)."""
        self.fleets: list[Fleet] = []
        self.movers: list[Any] = []
        """Devices moved by their own ``move()``, in id order, after the fleets."""
        self.held: list[Any] = []
        """Groups moved by scheduled events (herds): kept here because Mesa holds events weakly."""
        self._planned: tuple[list[Any] | None, bool, int] = (None, per_agent, -1)

    def invalidate(self) -> None:
        """Group the devices again at the next step (after changing how one device moves)."""
        self._planned = (None, self.per_agent, -1)

    def hold(self, group: Any) -> None:
        """Keep ``group`` alive for the model's lifetime (its bound ``walk`` is a scheduled event)."""
        self.held.append(group)

    def move(self, devices: list[Any], dt_s: float) -> None:
        """Move ``devices`` (the model's id-ordered list; planned again when it or the space changes)."""
        planned, mode, population = self._planned
        if planned is not devices or mode != self.per_agent or population != len(self.space._agent_to_index):
            self.plan(devices)
        for fleet in self.fleets:
            fleet.move(dt_s)
        for device in self.movers:
            device.move(dt_s)

    def plan(self, devices: list[Any]) -> None:
        """Group ``devices`` into fleets by kind, the rest into :attr:`movers`; seat them."""
        for fleet in self.fleets:
            fleet.release()
        groups: dict[type[Fleet], list[Any]] = {}
        movers: list[Any] = []
        for device in devices:
            kind = None if self.per_agent else fleet_kind(device, self.space)
            if kind is None:
                movers.append(device)
            elif kind is not Stationary:
                groups.setdefault(kind, []).append(device)
        index = self.space._agent_to_index  # a fleet's rows in the space's order: often one slice
        self.fleets = [
            kind(self.space, sorted(members, key=index.__getitem__)) for kind, members in groups.items()
        ]
        self.movers = movers
        self._planned = (devices, self.per_agent, len(self.space._agent_to_index))


class RouteFleet(Fleet):
    """Agents flying (driving) a polyline out and back at constant speed: inspection drones, robots.

    Reads of each agent: ``route_m`` (waypoints ``(W, 2)``), ``_cumulative`` (distance at each waypoint),
    ``route_length_m``, ``speed_mps``; holds ``travelled_m`` (a :class:`FleetField`). Routes shared by
    several agents (the same array) are stored once, one after the other in one array of cumulative
    distances, each shifted past the previous one; one ``searchsorted`` over it finds every agent's
    segment. The shift rounds, so the segment is then made exact with the unshifted distances (a step
    back, needed only when the distance flown lies just below a waypoint, within a rounding error).
    The arithmetic is the agent's ``_point()`` element by element: positions are bit-identical.
    """

    replaces = ("move", "_point")

    def __init__(self, space: Any, agents: Sequence[Any]) -> None:
        super().__init__(space, agents)
        route_ids: dict[int, int] = {}
        waypoints: list[np.ndarray] = []
        cumulative: list[np.ndarray] = []
        route_of = np.empty(len(self.agents), dtype=np.intp)
        for row, agent in enumerate(self.agents):
            route = route_ids.get(id(agent.route_m))
            if route is None:
                route = route_ids[id(agent.route_m)] = len(waypoints)
                waypoints.append(np.asarray(agent.route_m, dtype=float))
                cumulative.append(np.asarray(agent._cumulative, dtype=float))
            route_of[row] = route
        counts = np.array([len(c) for c in cumulative], dtype=np.intp)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        lengths = np.array([c[-1] for c in cumulative], dtype=float)
        shift = np.concatenate([[0.0], np.cumsum(lengths + 1.0)[:-1]])  # 1 m between two routes' ranges
        self._xy = np.concatenate(waypoints)
        self._cum = np.concatenate(cumulative)
        self._keys = self._cum + np.repeat(shift, counts)
        self._shift = shift[route_of]
        self._first = starts[route_of]
        self._last = self._first + counts[route_of] - 2  # the route's last segment
        self._length = np.array([float(a.route_length_m) for a in self.agents])
        self._loop = 2 * self._length
        self._speed = np.array([float(a.speed_mps) for a in self.agents])
        self.seat({"travelled_m": np.array([float(a.travelled_m) for a in self.agents])})

    def move(self, dt_s: float) -> None:
        """Every agent ``speed × dt`` metres further along its route, turning back at either end."""
        travelled = self.state["travelled_m"]
        travelled += self._speed * dt_s
        s = np.remainder(travelled, self._loop)
        s = np.where(s <= self._length, s, self._loop - s)
        lo = np.searchsorted(self._keys, s + self._shift, side="right") - 1
        lo = np.clip(lo, self._first, self._last)
        cum = self._cum
        # exact: lo = the route's last waypoint at or before s (at most its last segment's start). The
        # shifted search never counts too few (rounding is monotone), but may count a waypoint just above s.
        while (above := (lo > self._first) & (cum[lo] > s)).any():
            lo[above] -= 1
        c0 = cum[lo]
        seg = cum[lo + 1] - c0
        t = np.divide(s - c0, seg, out=np.zeros_like(s), where=seg != 0)
        a = self._xy[lo]
        self.place(a + t[:, None] * (self._xy[lo + 1] - a))


def inside_limits(points: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Whether each point (last axis x, y) lies in ``[0, limit]`` on both axes."""
    return ((points >= 0) & (points <= limits)).all(axis=-1)


class StreetFleet(Fleet):
    """Agents driving a Manhattan street grid, choosing a street at every intersection: robotaxis.

    Reads of each agent: ``block_m``, ``speed_mps``, ``_limits`` (the last street on each axis),
    ``turn_key`` (its turn stream); holds ``heading`` (0 east, 1 north, 2 west, 3 south) and
    ``turns_drawn`` (draws used). A step repeats, for the agents with distance left, one event each —
    drive to the next intersection or as far as the distance goes, or at the map's edge snap and turn —
    so an agent passing several intersections in a second is handled as its own ``move()`` does. Turns
    for every agent at an intersection in the same event are one :func:`counter_uniforms` call.
    """

    replaces = ("move", "_turn", "_inside")

    def __init__(self, space: Any, agents: Sequence[Any]) -> None:
        super().__init__(space, agents)
        self._block = np.array([float(a.block_m) for a in self.agents])
        self._speed = np.array([float(a.speed_mps) for a in self.agents])
        self._limits = np.array([[float(v) for v in a._limits] for a in self.agents]).reshape(-1, 2)
        self._keys = np.array([int(a.turn_key) for a in self.agents], dtype=np.uint64)
        self.seat(
            {
                "heading": np.array([int(a.heading) for a in self.agents], dtype=np.int64),
                "turns_drawn": np.array([int(a.turns_drawn) for a in self.agents], dtype=np.uint64),
            }
        )

    def move(self, dt_s: float) -> None:
        """Drive every agent ``speed × dt`` metres, turning at each intersection passed."""
        heading = self.state["heading"]
        pos = self.positions()
        remaining = self._speed * dt_s
        everyone = np.arange(len(self.agents))
        active: np.ndarray | slice = slice(None) if (remaining > 1e-9).all() else everyone[remaining > 1e-9]
        while True:
            ids = everyone[active]
            if not ids.size:
                break
            h = heading[active]
            p = pos[active]
            block = self._block[active]
            limits = self._limits[active]
            direction = HEADINGS[h]
            along = np.where(h % 2 == 0, p[:, 0], p[:, 1])
            offset = np.remainder(along, block)
            to_next = np.where(h < 2, block - offset, np.where(offset != 0, offset, block))
            ahead = p + direction * to_next[:, None]
            x, y = ahead[:, 0], ahead[:, 1]
            open_street = (x >= 0) & (x <= limits[:, 0]) & (y >= 0) & (y <= limits[:, 1])
            left = remaining[active]
            step = np.minimum(left, to_next)
            new = np.where(open_street[:, None], p + direction * step[:, None], p)
            turn = ~open_street | (step == to_next)  # at the map's edge, or arrived at an intersection
            if turn.any():
                new[turn] = np.round(new[turn] / block[turn, None]) * block[turn, None]
                turning = ids[turn]
                heading[turning] = self._turn(turning, new[turn])
            pos[active] = new
            left = np.where(open_street, left - step, left)
            remaining[active] = left
            active = ids[left > 1e-9]
        self.place(pos)

    def _turn(self, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """New headings of the agents ``rows`` standing on intersections ``pos``."""
        h = self.state["heading"][rows]
        options = np.stack([h, (h + 1) % 4, (h + 3) % 4], axis=1)
        reach = pos[:, None, :] + HEADINGS[options] * self._block[rows, None, None]
        allowed = inside_limits(reach, self._limits[rows, None, :])
        new = (h + 2) % 4  # dead end: U-turn
        draws = allowed.any(axis=1)
        if draws.any():
            drawing = rows[draws]
            counters = self.state["turns_drawn"]
            u = counter_uniforms(self._keys[drawing], counters[drawing])
            counters[drawing] += np.uint64(1)
            probs = TURN_PROBS * allowed[draws]
            cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
            cdf /= cdf[:, -1:]
            choice = (cdf <= u[:, None]).sum(axis=1)  # = searchsorted(cdf, u, side="right") per row
            new[draws] = options[draws][np.arange(choice.size), choice]
        return new


class OrbitFleet(Fleet):
    """Agents flying towards a point on a slowly turning circle around a leader agent: herding drones.

    Reads of each agent: ``leader`` (an agent of the same space), ``orbit_m``, ``speed_mps``,
    ``orbit_rate_rad_s``; holds ``phase`` (radians). The leader's position is read from the space.
    """

    replaces = ("move", "_station")

    @classmethod
    def accepts(cls, agent: Any, space: Any) -> bool:
        """The leader must be an agent of the same space."""
        return in_space(agent.leader, space)

    def __init__(self, space: Any, agents: Sequence[Any]) -> None:
        super().__init__(space, agents)
        self.leaders = [a.leader for a in self.agents]
        self._leader_rows: np.ndarray = np.empty(0, dtype=np.intp)
        self._orbit = np.array([float(a.orbit_m) for a in self.agents])
        self._speed = np.array([float(a.speed_mps) for a in self.agents])
        self._rate = np.array([float(a.orbit_rate_rad_s) for a in self.agents])
        self.seat({"phase": np.array([float(a.phase) for a in self.agents])})

    def rows(self) -> np.ndarray | slice:
        """The agents' rows (and the leaders', looked up at the same time)."""
        if len(self.space._agent_to_index) != self._rows_for:
            self._leader_rows = space_rows(self.space, self.leaders)
        return super().rows()

    def move(self, dt_s: float) -> None:
        """Every agent towards its station on the circle, at most ``speed × dt`` metres."""
        phase = self.state["phase"]
        phase += self._rate * dt_s
        pos = self.positions()
        offset = self._orbit[:, None] * np.stack([np.cos(phase), np.sin(phase)], axis=1)
        step = (self.space.agent_positions[self._leader_rows] + offset) - pos
        distance = np.sqrt(np.vecdot(step, step))  # the same dot as np.linalg.norm of one vector
        reach = self._speed * dt_s
        far = distance > reach
        scale = np.divide(reach, distance, out=np.ones_like(distance), where=far)
        self.place(pos + np.where(far[:, None], step * scale[:, None], step))
