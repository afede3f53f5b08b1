"""The example domain: a Job that a worker settles, and the beat heartbeat."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The declarative base of every model (Alembic reads its metadata)."""


class JobStatus(enum.StrEnum):
    """Where a job is in its life; SETTLED ones never change again."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _enum_values(enum_class: type[enum.Enum]) -> list[str]:
    # Store "queued", not "QUEUED": the values are what the API and the migration use.
    return [member.value for member in enum_class]


SETTLED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Job(Base):
    """A unit of work submitted over HTTP and processed by a worker."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    duration: Mapped[float] = mapped_column(default=0.0)
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False, length=20, values_callable=_enum_values),
        default=JobStatus.QUEUED,
        index=True,
    )
    # How many times a worker started this job: above 1 means it was redelivered.
    attempts: Mapped[int] = mapped_column(default=0)
    # How many times the job's side effect ran: the idempotency guard keeps it at most 1.
    side_effects: Mapped[int] = mapped_column(default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    def to_dict(self) -> dict[str, Any]:
        """Return the job as the JSON the API sends."""
        return {
            "id": self.id,
            "name": self.name,
            "duration": self.duration,
            "status": JobStatus(self.status).value,
            "attempts": self.attempts,
            "side_effects": self.side_effects,
            "result": self.result,
            "error": self.error,
            "task_id": self.task_id,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


class Heartbeat(Base):
    """The last time a periodic producer (beat) was seen through a worker."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    count: Mapped[int] = mapped_column(default=0)
