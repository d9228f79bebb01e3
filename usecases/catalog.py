"""What ``twin list`` shows about the built-in scenarios, without importing them (no torch, no Mesa).

Each built-in scenario module registers itself when imported; importing them all costs seconds
(torch, Mesa). This table holds their metadata so listing is instant, and names the module that
:func:`usecases.registry.get` imports when a scenario is actually run, checked or viewed. A test
(``tests/cli/test_catalog.py``) keeps it equal to what the modules register.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["agents", "calculation", "installed"]  # installed: an entry point not yet imported


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A scenario's metadata: enough to list it, and where its implementation lives."""

    name: str
    summary: str
    paper_section: str
    kind: Kind
    module: str | None = None


BUILTIN: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="beam-orchestration",
        summary="Paper 3.1.4: multi-cell beams from a predicted crowd under three predictor orchestrations",
        paper_section="3.1.4",
        kind="calculation",
        module="usecases.beam_orchestration",
    ),
    CatalogEntry(
        name="disease-diagnosis",
        summary="Terminals desensitise cases; the edge re-trains, infers, escalates to the core; drift",
        paper_section="2.3.6",
        kind="agents",
        module="usecases.disease_diagnosis",
    ),
    CatalogEntry(
        name="food-cycle",
        summary="Food ledgers of shops, warehouses, vans, homes, waste trucks: data service, federated "
        "demand model, compressed and placed, optimised allocation and routes",
        paper_section="2.3.3",
        kind="agents",
        module="usecases.food_cycle",
    ),
    CatalogEntry(
        name="grid-inspection",
        summary="Drones patrol power lines: on-board fault detection, escalation, federated learning",
        paper_section="2.3.8",
        kind="agents",
        module="usecases.grid_inspection",
    ),
    CatalogEntry(
        name="home-health",
        summary="Home sensor hubs learn fall/arrhythmia/apnea detection by federated learning over MQTT",
        paper_section="2.3.4",
        kind="agents",
        module="usecases.home_health",
    ),
    CatalogEntry(
        name="industrial-robots",
        summary="Factory robots: per-step clustered FL of a defect CNN, live split inference, bounded jitter",
        paper_section="2.3.2",
        kind="agents",
        module="usecases.industrial_robots",
    ),
    CatalogEntry(
        name="robotaxi",
        summary="Robotaxis cruising a street grid learn the regional demand model by federated learning",
        paper_section="2.3.1",
        kind="agents",
        module="usecases.robotaxi",
    ),
    CatalogEntry(
        name="virtual-classroom",
        summary="VR/AR learners: generated engagement model, federated training, edge rendering (EDF/FCFS)",
        paper_section="2.3.7",
        kind="agents",
        module="usecases.virtual_classroom",
    ),
    CatalogEntry(
        name="unmanned-grazing",
        summary="Herds on a 60 km² pasture: drones and cameras learn herd health over cells and a satellite, "
        "store and forward, model sharing",
        paper_section="2.3.5",
        kind="agents",
        module="usecases.unmanned_grazing",
    ),
    CatalogEntry(
        name="seed-federated-training",
        summary="Paper Tables 3-14/3-15: federated VGG-16 training time, energy and CO2",
        paper_section="3.2.4.2",
        kind="calculation",
        module="usecases.seed_federated_training",
    ),
    CatalogEntry(
        name="seed-split-inference",
        summary="Paper Table 3-13: split inference of VGG-16, latency/energy of every split point",
        paper_section="3.2.4.1",
        kind="calculation",
        module="usecases.seed_split_inference",
    ),
)
_BY_NAME = {entry.name: entry for entry in BUILTIN}


def builtin(name: str) -> CatalogEntry | None:
    """The built-in scenario called ``name``, or ``None``."""
    return _BY_NAME.get(name)
