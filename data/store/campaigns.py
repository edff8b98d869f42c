"""Campaign and iteration bookkeeping of the candidate store (a mixin of :class:`CandidateStore`).

A campaign row exists for every campaign id that appears in a candidate's provenance (created
implicitly, without config) or that was registered with :meth:`CampaignMixin.ensure_campaign`;
iterations are numbered from 0 within a campaign and carry their report as JSON text.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Table, select, update

from crystaloop.data.errors import StoreError
from crystaloop.data.store.models import IterationRecord
from crystaloop.data.store.schema import CampaignRow, IterationRow, utcnow

__all__ = ["CampaignMixin"]

_CAMPAIGNS: Table = CampaignRow.__table__  # type: ignore[assignment]
_ITERATIONS: Table = IterationRow.__table__  # type: ignore[assignment]


class CampaignMixin:
    """Campaigns and iterations; relies on the store's ``_read``, ``_write`` and ``_insert``."""

    def _read(self) -> AbstractContextManager[Connection]:  # provided by CandidateStore
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:  # provided by CandidateStore
        raise NotImplementedError

    def _insert(self, table: Table) -> Any:  # provided by CandidateStore
        raise NotImplementedError

    def _ensure_campaigns(self, conn: Connection, campaign_ids: Iterable[str], now: dt.datetime) -> None:
        rows = [
            {"id": cid, "name": cid, "config_json": "{}", "config_hash": "", "created_at": now}
            for cid in sorted(set(campaign_ids))
        ]
        if rows:
            conn.execute(self._insert(_CAMPAIGNS).on_conflict_do_nothing(index_elements=["id"]), rows)

    def ensure_campaign(
        self, campaign_id: str, *, name: str = "", config_json: str = "{}", config_hash: str = ""
    ) -> None:
        """Create the campaign if needed; fill in name and config where it has none yet.

        A campaign created implicitly (by adding candidates whose provenance names it) has no
        config; the first call with one records it.

        Raises:
            StoreError: ``config_json`` is not JSON, or the campaign exists with another non-empty
                ``config_hash`` (reusing a campaign id for a different config).
        """
        _check_json(config_json, "config_json")
        if not campaign_id:
            raise StoreError("campaign_id must be a non-empty string")
        now = utcnow()
        with self._write() as conn:
            self._ensure_campaigns(conn, [campaign_id], now)
            row = conn.execute(select(_CAMPAIGNS).where(_CAMPAIGNS.c.id == campaign_id).with_for_update()).one()
            if config_hash and row.config_hash and row.config_hash != config_hash:
                raise StoreError(
                    f"campaign {campaign_id!r} exists with config hash {row.config_hash!r}, got {config_hash!r}; "
                    "use a new campaign id for a different config"
                )
            values: dict[str, str] = {}
            if name and name != row.name:
                values["name"] = name
            if config_hash and not row.config_hash:
                values["config_hash"] = config_hash
            if config_json != "{}" and row.config_json == "{}":
                values["config_json"] = config_json
            if values:
                conn.execute(update(_CAMPAIGNS).where(_CAMPAIGNS.c.id == campaign_id).values(**values))

    def campaigns(self) -> list[str]:
        """Ids of every campaign, sorted."""
        with self._read() as conn:
            return list(conn.execute(select(_CAMPAIGNS.c.id).order_by(_CAMPAIGNS.c.id)).scalars())

    def start_iteration(self, campaign_id: str, index: int) -> None:
        """Mark iteration ``index`` (≥ 0) of a campaign as started (creating the campaign if needed).

        Starting an unfinished iteration again (a resumed run) keeps the first start time.

        Raises:
            StoreError: negative index, or the iteration has already finished.
        """
        if not isinstance(index, int) or index < 0:
            raise StoreError(f"iteration index must be a non-negative integer, got {index!r}")
        now = utcnow()
        with self._write() as conn:
            self._ensure_campaigns(conn, [campaign_id], now)
            stmt = self._insert(_ITERATIONS).on_conflict_do_nothing(index_elements=["campaign_id", "index"])
            conn.execute(stmt.values(campaign_id=campaign_id, index=index, started_at=now))
            finished = conn.execute(
                select(_ITERATIONS.c.finished_at).where(
                    _ITERATIONS.c.campaign_id == campaign_id, _ITERATIONS.c.index == index
                )
            ).scalar_one()
            if finished is not None:
                raise StoreError(f"iteration {index} of campaign {campaign_id!r} already finished at {finished}")

    def finish_iteration(self, campaign_id: str, index: int, report_json: str) -> None:
        """Store the report (JSON text) of a started iteration and its end time.

        Raises:
            StoreError: the iteration was never started, or ``report_json`` is not JSON.
        """
        _check_json(report_json, "report_json")
        with self._write() as conn:
            done = conn.execute(
                update(_ITERATIONS)
                .where(_ITERATIONS.c.campaign_id == campaign_id, _ITERATIONS.c.index == index)
                .values(finished_at=utcnow(), report_json=report_json)
            ).rowcount
        if not done:
            raise StoreError(f"iteration {index} of campaign {campaign_id!r} was never started; call start_iteration")

    def iterations(self, campaign_id: str) -> list[IterationRecord]:
        """The campaign's iterations by index (empty for a campaign without any).

        Raises:
            StoreError: no campaign has this id.
        """
        stmt = select(_ITERATIONS).where(_ITERATIONS.c.campaign_id == campaign_id).order_by(_ITERATIONS.c.index)
        with self._read() as conn:
            found = [
                IterationRecord(
                    campaign_id=r.campaign_id,
                    index=r.index,
                    started_at=r.started_at,
                    finished_at=r.finished_at,
                    report_json=r.report_json,
                )
                for r in conn.execute(stmt)
            ]
            if not found:
                self._require_campaign(conn, campaign_id)
        return found

    def _require_campaign(self, conn: Connection, campaign_id: str) -> None:
        if conn.execute(select(_CAMPAIGNS.c.id).where(_CAMPAIGNS.c.id == campaign_id)).first() is None:
            known = list(conn.execute(select(_CAMPAIGNS.c.id).order_by(_CAMPAIGNS.c.id).limit(20)).scalars())
            raise StoreError(f"no campaign {campaign_id!r}; known: {', '.join(known) or 'none'}")


def _check_json(text: str, name: str) -> None:
    try:
        json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{name} must be JSON text, got {str(text)[:80]!r} ({exc})") from None
