"""What the store hands back besides candidates: add reports, status changes, iterations."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from crystaloop.data.records import CandidateStatus

__all__ = ["AddReport", "StatusChange", "IterationRecord"]


class AddReport(BaseModel):
    """What :meth:`CandidateStore.add_many` did.

    Attributes:
        added: candidates that were new.
        existing: candidates already stored (a repeat within the same call counts here too).
        ids: the id of every input candidate, in input order (``added + existing`` of them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    added: int = Field(ge=0)
    existing: int = Field(ge=0)
    ids: list[str]


class StatusChange(BaseModel):
    """One entry of a candidate's status history (``from_status`` is ``None`` for the first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidate_id: str
    from_status: CandidateStatus | None
    to_status: CandidateStatus
    note: str = ""
    at: dt.datetime


class IterationRecord(BaseModel):
    """One iteration of a campaign; ``finished_at`` and ``report_json`` stay ``None`` until it ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign_id: str
    index: int
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    report_json: str | None = None
