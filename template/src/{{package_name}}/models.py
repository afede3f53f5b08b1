"""The tables every service has: the declarative base and the beat heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The declarative base of every model (Alembic reads its metadata)."""


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Return a stored time timezone-aware in UTC (SQLite gives it back naive; it is UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# The Heartbeat row that beat's periodic task updates and /health/celery reports.
BEAT_HEARTBEAT = "beat"


class Heartbeat(Base):
    """The last time a periodic producer (beat) was seen through a worker."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    count: Mapped[int] = mapped_column(default=0)
