"""API keys through the admin API: issue (the secret shown once), list, read, change owner, tier or
note, rotate (the old secret valid for a grace period), revoke. Every change audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from ratewarden.enforcer.apikeys import ApiKeyRecord, ApiKeyStore

from .audit import AuditLog, Who
from .fielderrors import UNPROCESSABLE, invalid

__all__ = ["KeyInfo", "CreatedKey", "keys_router"]

KeyId = Annotated[str, Path(pattern=r"^key_[0-9a-f]{1,32}$", description="the key's id (key_...)")]
_TIER = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_GRACE_S = 30 * 86_400


class PreviousKey(BaseModel):
    """The secret a rotation replaced, still accepted until ``expires_at``."""

    prefix: str
    expires_at: float


class KeyInfo(BaseModel):
    """What is known of a key: never the key itself."""

    id: str = Field(description="the key's id; its client id is k:<id>")
    owner: str
    tier: str | None = Field(description="its tier; null: the policy's default tier")
    note: str = ""
    prefix: str = Field(description="the current secret's first characters, to recognise it")
    created_at: float = Field(description="unix time the current secret was issued")
    revoked_at: float | None = None
    status: Literal["active", "revoked"]
    previous: PreviousKey | None = Field(None, description="a rotated-out secret in its grace period")

    @classmethod
    def of(cls, record: ApiKeyRecord, previous: ApiKeyRecord | None = None) -> KeyInfo:
        fields = msgspec.structs.asdict(record)
        fields.pop("expires_at")
        status: Literal["active", "revoked"] = "revoked" if record.revoked_at is not None else "active"
        earlier = (PreviousKey(prefix=previous.prefix, expires_at=previous.expires_at)
                   if previous is not None and previous.expires_at is not None else None)
        return cls(**fields, status=status, previous=earlier)


class CreatedKey(BaseModel):
    api_key: str = Field(description="the secret: shown now and never again")
    record: KeyInfo


class KeyRequest(BaseModel):
    owner: str = Field(min_length=1, max_length=200)
    tier: str | None = Field(None, pattern=_TIER, description="null: the policy's default tier")
    note: str = Field("", max_length=500)


class KeyChange(BaseModel):
    """Fields to change; those left out stay as they are (``tier: null`` means the default tier)."""

    owner: str | None = Field(None, min_length=1, max_length=200)
    tier: str | None = Field(None, pattern=_TIER)
    note: str | None = Field(None, max_length=500)


class Rotation(BaseModel):
    grace_s: float | None = Field(None, ge=0, le=MAX_GRACE_S, description=(
        "seconds the old secret keeps working; default RATEWARDEN_KEY_ROTATION_GRACE_S"))


def keys_router(store: Callable[[], ApiKeyStore], audit: AuditLog, tier_names: Callable[[], set[str]],
                grace_s: float) -> APIRouter:
    """``/keys``. ``store()`` raises a 503 when keys are off; ``tier_names()`` are the tiers a key may name."""
    router = APIRouter(prefix="/keys", tags=["keys"], responses=UNPROCESSABLE)

    def known_tier(tier: str | None) -> None:
        if tier is not None and tier not in tier_names():
            raise invalid(["body", "tier"], f"no tier {tier!r}; tiers are: {', '.join(sorted(tier_names()))}")

    def info(keys: ApiKeyStore, record: ApiKeyRecord) -> KeyInfo:
        return KeyInfo.of(record, keys.previous(record.id))

    def dump(record: ApiKeyRecord | None) -> dict[str, object] | None:
        return msgspec.structs.asdict(record) if record is not None else None

    def existing(keys: ApiKeyStore, key_id: str) -> ApiKeyRecord:
        record = keys.get(key_id)
        if record is None:
            raise HTTPException(404, f"no key {key_id!r}")
        return record

    @router.post("", status_code=201)
    def create_key(request: KeyRequest, who: Who = Depends(audit.who)) -> CreatedKey:
        """Issue a key: the secret is in this answer only; Redis keeps a keyed hash."""
        keys = store()
        known_tier(request.tier)
        api_key, record = keys.create(request.owner, request.tier, request.note)
        audit.record(who, "key.create", record.id, None, dump(record))
        return CreatedKey(api_key=api_key, record=KeyInfo.of(record))

    @router.get("")
    def list_keys() -> list[KeyInfo]:
        """Every key's id, owner, tier, note, prefix and status (never the key)."""
        keys = store()
        previous = keys.previous_all()
        return [KeyInfo.of(record, previous.get(record.id)) for record in keys.list()]

    @router.get("/{key_id}")
    def get_key(key_id: KeyId) -> KeyInfo:
        keys = store()
        return info(keys, existing(keys, key_id))

    @router.patch("/{key_id}")
    def change_key(key_id: KeyId, change: KeyChange, who: Who = Depends(audit.who)) -> KeyInfo:
        """Change a key's owner, tier or note; enforcers use the new tier within a second."""
        keys = store()
        before = existing(keys, key_id)
        given = change.model_fields_set
        if "tier" in given:
            known_tier(change.tier)
        if "owner" in given and change.owner is None:
            raise invalid(["body", "owner"], "an owner cannot be removed")
        after = keys.update(key_id, owner=change.owner, note=change.note,
                            **({"tier": change.tier} if "tier" in given else {}))
        if after is None:
            raise HTTPException(404, f"no key {key_id!r}")
        audit.record(who, "key.change", key_id, dump(before), dump(after))
        return info(keys, after)

    @router.post("/{key_id}/rotate")
    def rotate_key(key_id: KeyId, who: Who = Depends(audit.who), rotation: Rotation | None = None) -> CreatedKey:
        """A new secret for the key (same id, owner, tier and counters); the old one keeps working
        for the grace period, then every enforcer refuses it. The new secret is in this answer only."""
        keys = store()
        before = existing(keys, key_id)
        if before.revoked_at is not None:
            raise HTTPException(409, f"key {key_id!r} is revoked")
        grace = rotation.grace_s if rotation is not None and rotation.grace_s is not None else grace_s
        rotated = keys.rotate(key_id, grace)
        if rotated is None:
            raise HTTPException(404, f"no key {key_id!r}")
        api_key, record = rotated
        audit.record(who, "key.rotate", key_id, dump(before), {**msgspec.structs.asdict(record), "grace_s": grace})
        return CreatedKey(api_key=api_key, record=info(keys, record))

    @router.delete("/{key_id}", status_code=204)
    def revoke_key(key_id: KeyId, who: Who = Depends(audit.who)) -> None:
        """Revoke a key (and a rotated-out secret of it): refused by every enforcer within a second."""
        keys = store()
        before = existing(keys, key_id)
        if not keys.revoke(key_id):
            raise HTTPException(404, f"no key {key_id!r}")
        audit.record(who, "key.revoke", key_id, dump(before), dump(keys.get(key_id)))

    return router
