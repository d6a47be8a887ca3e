"""Labels: create/list/update/delete and attach/detach."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from inbox_allocation.api.schemas.conversations import Allocation, Conversation, Lifecycle
from inbox_allocation.api.schemas.envelope import Envelope, ErrorEnvelope
from inbox_allocation.api.schemas.labels import Label
from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN, ACME_MANAGER, HOT_LEAD, label
from inbox_allocation.db.seed_ids import ACME_OP4 as ACME_OPERATOR_INBOX_1
from inbox_allocation.db.seed_ids import ACME_OP7 as ACME_OPERATOR_INBOX_2
from inbox_allocation.db.seed_ids import INBOX_BILLING as INBOX_3
from inbox_allocation.db.seed_ids import INBOX_SALES as INBOX_1
from inbox_allocation.db.seed_ids import INBOX_SUPPORT as INBOX_2
from inbox_allocation.db.seed_ids import INBOX_TECH_GENERAL as INBOX_4
from inbox_allocation.db.seed_ids import conversation as conv
from tests.support.http import headers as as_caller
from tests.support.http import status_and_code as error_code

MISSING = "99999999-0000-0000-0000-000000000001"
NIL_UUID = "00000000-0000-0000-0000-000000000000"
FOLLOW_UP = label(2)  # inbox 1, on conversation 05
URGENT = label(4)  # inbox 2
TECHSTART_LABEL = label(9)


async def create(
    client: httpx.AsyncClient, body: Any, operator: str = ACME_MANAGER
) -> httpx.Response:
    return await client.post("/api/v1/labels", json=body, headers=as_caller(operator))


def pair(conversation: Any, label: Any) -> dict[str, Any]:
    return {"conversation_id": conversation, "label_id": label}


async def attachments(db: asyncpg.Pool, conversation: str, label: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM conversation_labels WHERE conversation_id = $1 AND label_id = $2",
        conversation,
        label,
    )
    return count


# ---- POST /labels ------------------------------------------------------------------------


async def test_create_label(client: httpx.AsyncClient) -> None:
    response = await create(client, {"inbox_id": INBOX_1, "name": "  VIP  ", "color": "#00ff00"})
    assert response.status_code == 201
    body = Envelope[Label].model_validate(response.json())
    assert body.success is True
    label = body.data
    assert (str(label.tenant_id), str(label.inbox_id)) == (ACME, INBOX_1)
    assert label.name == "VIP"  # trimmed
    assert label.color == "#00ff00"
    assert str(label.created_by) == ACME_MANAGER


async def test_create_label_without_colour(client: httpx.AsyncClient) -> None:
    for body in (
        {"inbox_id": INBOX_1, "name": "Plain"},
        {"inbox_id": INBOX_2, "name": "P", "color": None},
    ):
        response = await create(client, body)
        assert response.status_code == 201
        assert response.json()["data"]["color"] is None


async def test_create_with_trailing_slash(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/labels/", json={"inbox_id": INBOX_1, "name": "X"}, headers=as_caller(ACME_ADMIN)
    )
    assert response.status_code == 201


async def test_operator_cannot_create(client: httpx.AsyncClient) -> None:
    response = await create(client, {"inbox_id": INBOX_1, "name": "X"}, ACME_OPERATOR_INBOX_1)
    assert error_code(response) == (403, "LABEL_PERMISSION_DENIED")


async def test_validation_comes_before_the_role_check(client: httpx.AsyncClient) -> None:
    response = await create(client, {"inbox_id": INBOX_1, "name": " "}, ACME_OPERATOR_INBOX_1)
    assert error_code(response) == (400, "VALIDATION_ERROR")


@pytest.mark.parametrize("inbox", [MISSING, INBOX_4])
async def test_create_in_unknown_or_foreign_inbox(client: httpx.AsyncClient, inbox: str) -> None:
    response = await create(client, {"inbox_id": inbox, "name": "X"})
    assert error_code(response) == (404, "INBOX_NOT_FOUND")


@pytest.mark.parametrize("name", ["Hot Lead", "  Hot Lead ", "Hot Lead\t"])
async def test_duplicate_name_in_inbox_conflicts(client: httpx.AsyncClient, name: str) -> None:
    response = await create(client, {"inbox_id": INBOX_1, "name": name})
    assert error_code(response) == (409, "LABEL_NAME_CONFLICT")


async def test_names_are_unique_per_inbox_and_case_sensitive(client: httpx.AsyncClient) -> None:
    assert (await create(client, {"inbox_id": INBOX_1, "name": "hot lead"})).status_code == 201
    assert (await create(client, {"inbox_id": INBOX_2, "name": "Hot Lead"})).status_code == 201


async def test_concurrent_creates_of_one_name(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    body = {"inbox_id": INBOX_3, "name": "Race", "color": "#123456"}
    responses = await asyncio.gather(*(create(client, body) for _ in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9  # never a 500
    assert {error_code(r)[1] for r in responses if r.status_code == 409} == {"LABEL_NAME_CONFLICT"}
    rows = await db.fetchval(
        "SELECT count(*) FROM labels WHERE inbox_id = $1 AND name = 'Race'",
        INBOX_3,
    )
    assert rows == 1


@pytest.mark.parametrize(
    "body",
    [
        {"inbox_id": INBOX_1, "name": "X", "color": "red"},
        {"inbox_id": INBOX_1, "name": "X", "color": "#FF573"},
        {"inbox_id": INBOX_1, "name": "X", "color": "#FF5733AA"},  # the Go service: a 500
        {"inbox_id": INBOX_1, "name": "X", "color": "FF5733"},
        {"inbox_id": INBOX_1, "name": "X", "color": "#GG5733"},
        {"inbox_id": INBOX_1, "name": "X", "color": ""},
        {"inbox_id": INBOX_1, "name": "x" * 65},
        {"inbox_id": INBOX_1, "name": "   "},
        {"inbox_id": INBOX_1, "name": ""},
        {"inbox_id": INBOX_1, "name": "a\u0000b"},
        {"inbox_id": INBOX_1, "name": None},
        {"inbox_id": INBOX_1},
        {"name": "X"},
        {"inbox_id": None, "name": "X"},
        {"inbox_id": "00000000-0000-0000-0000-000000000000", "name": "X"},
        {},
    ],
)
async def test_create_validation(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await create(client, body)
    assert error_code(response) == (400, "VALIDATION_ERROR")
    assert ErrorEnvelope.model_validate(response.json()).error.details


async def test_name_limit_is_64_characters_after_trim(client: httpx.AsyncClient) -> None:
    name = "é" * 64  # 128 bytes, 64 characters
    response = await create(client, {"inbox_id": INBOX_1, "name": f"  {name}  "})
    assert response.status_code == 201
    assert response.json()["data"]["name"] == name


async def test_all_failed_rules_are_listed(client: httpx.AsyncClient) -> None:
    response = await create(client, {"name": " ", "color": "blue"})
    details = ErrorEnvelope.model_validate(response.json()).error.details
    assert details is not None
    assert len(details) == 3


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"inbox_id": "' + INBOX_1.encode() + b'", "name": "X"} trailing',
        b'{"inbox_id": 5, "name": "X"}',
        b'{"inbox_id": "not-a-uuid", "name": "X"}',
        b'{"inbox_id": "' + INBOX_1.encode() + b'", "name": 5}',
        b'{"inbox_id": "' + INBOX_1.encode() + b'", "name": "X", "color": 5}',
        b"[]",
        b"",
    ],
)
async def test_malformed_create_body(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post("/api/v1/labels", content=content, headers=as_caller(ACME_MANAGER))
    assert error_code(response) == (400, "BAD_REQUEST")


# ---- GET /labels -------------------------------------------------------------------------


async def test_list_is_a_bare_array_ordered_by_name(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/labels", params={"inbox_id": INBOX_1}, headers=as_caller(ACME_MANAGER)
    )
    assert response.status_code == 200
    labels = Envelope[list[Label]].model_validate(response.json()).data
    assert [x.name for x in labels] == ["Enterprise", "Follow Up", "Hot Lead"]
    assert {str(x.inbox_id) for x in labels} == {INBOX_1}
    hot = labels[2]
    assert (str(hot.id), hot.color, str(hot.created_by)) == (HOT_LEAD, "#FF5733", ACME_MANAGER)


async def test_list_with_trailing_slash(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/labels/", params={"inbox_id": INBOX_2}, headers=as_caller(ACME_ADMIN)
    )
    assert [x["name"] for x in response.json()["data"]] == [
        "Bug Report",
        "Feature Request",
        "Urgent",
    ]


async def test_list_of_inbox_without_labels(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    await db.execute("DELETE FROM labels WHERE inbox_id = $1", INBOX_3)
    response = await client.get(
        "/api/v1/labels", params={"inbox_id": INBOX_3}, headers=as_caller(ACME_ADMIN)
    )
    assert response.json()["data"] == []


@pytest.mark.parametrize("params", [{}, {"inbox_id": ""}, {"inbox_id": "nope"}])
async def test_list_needs_a_valid_inbox_id(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/api/v1/labels", params=params, headers=as_caller(ACME_ADMIN))
    assert error_code(response) == (400, "INVALID_QUERY")


@pytest.mark.parametrize("inbox", [MISSING, INBOX_4])
async def test_list_of_unknown_or_foreign_inbox(client: httpx.AsyncClient, inbox: str) -> None:
    response = await client.get(
        "/api/v1/labels", params={"inbox_id": inbox}, headers=as_caller(ACME_ADMIN)
    )
    assert error_code(response) == (404, "INBOX_NOT_FOUND")


@pytest.mark.parametrize(
    ("operator", "inbox", "status"),
    [
        (ACME_OPERATOR_INBOX_1, INBOX_1, 200),
        (ACME_OPERATOR_INBOX_1, INBOX_2, 403),
        (ACME_OPERATOR_INBOX_2, INBOX_2, 200),
        (ACME_OPERATOR_INBOX_2, INBOX_3, 403),
        (ACME_MANAGER, INBOX_3, 200),  # managers need no subscription
        (ACME_ADMIN, INBOX_3, 200),
    ],
)
async def test_list_permissions(
    client: httpx.AsyncClient, operator: str, inbox: str, status: int
) -> None:
    response = await client.get(
        "/api/v1/labels", params={"inbox_id": inbox}, headers=as_caller(operator)
    )
    assert response.status_code == status
    if status == 403:
        assert error_code(response) == (403, "LABEL_PERMISSION_DENIED")


# ---- PUT /labels/{id} --------------------------------------------------------------------


async def update(
    client: httpx.AsyncClient, label_id: str, body: Any, operator: str = ACME_MANAGER
) -> httpx.Response:
    return await client.put(f"/api/v1/labels/{label_id}", json=body, headers=as_caller(operator))


async def test_rename_keeps_colour(client: httpx.AsyncClient) -> None:
    response = await update(client, HOT_LEAD, {"name": "  Warm Lead ", "color": None})
    assert response.status_code == 200
    label = Envelope[Label].model_validate(response.json()).data
    assert (label.name, label.color) == ("Warm Lead", "#FF5733")


async def test_recolour_keeps_name(client: httpx.AsyncClient) -> None:
    response = await update(client, HOT_LEAD, {"color": "#abcdef"})
    label = Envelope[Label].model_validate(response.json()).data
    assert (label.name, label.color) == ("Hot Lead", "#abcdef")


async def test_rename_to_its_own_name(client: httpx.AsyncClient) -> None:
    assert (await update(client, HOT_LEAD, {"name": "Hot Lead"})).status_code == 200


async def test_rename_to_a_name_of_another_inbox(client: httpx.AsyncClient) -> None:
    assert (await update(client, HOT_LEAD, {"name": "Urgent"})).status_code == 200


async def test_rename_conflict(client: httpx.AsyncClient) -> None:
    response = await update(client, HOT_LEAD, {"name": " Follow Up "})
    assert error_code(response) == (409, "LABEL_NAME_CONFLICT")


async def test_concurrent_renames_to_one_name(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        update(client, HOT_LEAD, {"name": "Same"}), update(client, FOLLOW_UP, {"name": "Same"})
    )
    assert sorted(r.status_code for r in responses) == [200, 409]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": None, "color": None},
        {"name": " "},
        {"name": "x" * 65},
        {"color": "#12345"},
        {"color": "#1234567"},
        {"name": "ok", "color": "nope"},
    ],
)
async def test_update_validation(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await update(client, HOT_LEAD, body)
    assert error_code(response) == (400, "VALIDATION_ERROR")


async def test_update_path_is_checked_before_the_body(client: httpx.AsyncClient) -> None:
    response = await update(client, "nope", {})
    assert error_code(response) == (400, "INVALID_PATH")


async def test_update_malformed_body(client: httpx.AsyncClient) -> None:
    response = await update(client, HOT_LEAD, {"name": 5})
    assert error_code(response) == (400, "BAD_REQUEST")


async def test_operator_cannot_update(client: httpx.AsyncClient) -> None:
    response = await update(client, HOT_LEAD, {"name": "Mine"}, ACME_OPERATOR_INBOX_1)
    assert error_code(response) == (403, "LABEL_PERMISSION_DENIED")


@pytest.mark.parametrize("label_id", [MISSING, TECHSTART_LABEL])
async def test_update_unknown_or_foreign_label(client: httpx.AsyncClient, label_id: str) -> None:
    response = await update(client, label_id, {"name": "Mine"})
    assert error_code(response) == (404, "LABEL_NOT_FOUND")


# ---- DELETE /labels/{id} -----------------------------------------------------------------


async def test_delete_removes_label_and_attachments(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.delete(f"/api/v1/labels/{HOT_LEAD}", headers=as_caller(ACME_ADMIN))
    assert response.status_code == 204
    assert response.content == b""
    assert await attachments(db, conv(1), HOT_LEAD) == 0
    again = await client.delete(f"/api/v1/labels/{HOT_LEAD}", headers=as_caller(ACME_ADMIN))
    assert error_code(again) == (404, "LABEL_NOT_FOUND")


@pytest.mark.parametrize(
    ("label_id", "operator", "expected"),
    [
        ("nope", ACME_ADMIN, (400, "INVALID_PATH")),
        ("nope", ACME_OPERATOR_INBOX_1, (400, "INVALID_PATH")),
        (HOT_LEAD, ACME_OPERATOR_INBOX_1, (403, "LABEL_PERMISSION_DENIED")),
        (MISSING, ACME_OPERATOR_INBOX_1, (403, "LABEL_PERMISSION_DENIED")),
        (MISSING, ACME_MANAGER, (404, "LABEL_NOT_FOUND")),
        (TECHSTART_LABEL, ACME_ADMIN, (404, "LABEL_NOT_FOUND")),
    ],
)
async def test_delete_errors(
    client: httpx.AsyncClient, label_id: str, operator: str, expected: tuple[int, str]
) -> None:
    response = await client.delete(f"/api/v1/labels/{label_id}", headers=as_caller(operator))
    assert error_code(response) == expected


async def test_foreign_label_survives(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    await client.delete(f"/api/v1/labels/{TECHSTART_LABEL}", headers=as_caller(ACME_ADMIN))
    assert await db.fetchval("SELECT count(*) FROM labels WHERE id = $1", TECHSTART_LABEL) == 1


# ---- attach / detach ---------------------------------------------------------------------


async def link(
    client: httpx.AsyncClient, action: str, body: Any, operator: str = ACME_MANAGER
) -> httpx.Response:
    return await client.post(f"/api/v1/labels/{action}", json=body, headers=as_caller(operator))


async def test_attach_is_idempotent(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    body = {"conversation_id": conv(3), "label_id": HOT_LEAD}
    for _ in range(2):
        response = await link(client, "attach", body)
        assert response.status_code == 204
        assert response.content == b""
    assert await attachments(db, conv(3), HOT_LEAD) == 1
    get = await client.get(f"/api/v1/conversations/{conv(3)}", headers=as_caller(ACME_MANAGER))
    labels = Envelope[Conversation].model_validate(get.json()).data.labels
    assert [str(x.id) for x in labels] == [HOT_LEAD]


async def test_attach_already_attached(client: httpx.AsyncClient) -> None:
    response = await link(client, "attach", {"conversation_id": conv(1), "label_id": HOT_LEAD})
    assert response.status_code == 204


async def test_concurrent_attaches(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    body = {"conversation_id": conv(4), "label_id": FOLLOW_UP}
    responses = await asyncio.gather(*(link(client, "attach", body) for _ in range(10)))
    assert {r.status_code for r in responses} == {204}
    assert await attachments(db, conv(4), FOLLOW_UP) == 1


async def test_attach_to_resolved_conversation(client: httpx.AsyncClient) -> None:
    response = await link(client, "attach", {"conversation_id": conv(9), "label_id": HOT_LEAD})
    assert response.status_code == 204


@pytest.mark.parametrize(
    ("body", "operator", "expected"),
    [
        # order: conversation → label → inbox match → subscription
        (pair(conv(99), MISSING), ACME_ADMIN, (404, "CONVERSATION_NOT_FOUND")),
        (pair(conv(39), HOT_LEAD), ACME_ADMIN, (404, "CONVERSATION_NOT_FOUND")),
        (pair(conv(1), MISSING), ACME_ADMIN, (404, "LABEL_NOT_FOUND")),
        (pair(conv(1), TECHSTART_LABEL), ACME_ADMIN, (404, "LABEL_NOT_FOUND")),
        (pair(conv(1), URGENT), ACME_ADMIN, (400, "LABEL_INBOX_MISMATCH")),
        (pair(conv(1), URGENT), ACME_OPERATOR_INBOX_2, (400, "LABEL_INBOX_MISMATCH")),
        (pair(conv(1), HOT_LEAD), ACME_OPERATOR_INBOX_2, (403, "LABEL_PERMISSION_DENIED")),
    ],
)
async def test_attach_errors(
    client: httpx.AsyncClient, body: dict[str, str], operator: str, expected: tuple[int, str]
) -> None:
    assert error_code(await link(client, "attach", body, operator)) == expected


async def test_subscribed_operator_can_attach_and_detach(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    body = {"conversation_id": conv(3), "label_id": FOLLOW_UP}
    assert (await link(client, "attach", body, ACME_OPERATOR_INBOX_1)).status_code == 204
    assert await attachments(db, conv(3), FOLLOW_UP) == 1
    assert (await link(client, "detach", body, ACME_OPERATOR_INBOX_1)).status_code == 204
    assert await attachments(db, conv(3), FOLLOW_UP) == 0


async def test_manager_needs_no_subscription(client: httpx.AsyncClient) -> None:
    refund = label(7)  # inbox 3; manager 02 is on 1 and 2
    body = {"conversation_id": conv(32), "label_id": refund}
    assert (await link(client, "attach", body, ACME_MANAGER)).status_code == 204


async def test_detach_is_idempotent(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    body = {"conversation_id": conv(1), "label_id": HOT_LEAD}
    for _ in range(2):
        assert (await link(client, "detach", body)).status_code == 204
    assert await attachments(db, conv(1), HOT_LEAD) == 0
    assert await attachments(db, conv(2), HOT_LEAD) == 1


async def test_detach_has_no_inbox_check(client: httpx.AsyncClient) -> None:
    response = await link(client, "detach", {"conversation_id": conv(1), "label_id": URGENT})
    assert response.status_code == 204


async def test_concurrent_detaches(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    body = {"conversation_id": conv(2), "label_id": HOT_LEAD}
    responses = await asyncio.gather(*(link(client, "detach", body) for _ in range(10)))
    assert {r.status_code for r in responses} == {204}
    assert await attachments(db, conv(2), HOT_LEAD) == 0


@pytest.mark.parametrize(
    ("body", "operator", "expected"),
    [
        (pair(conv(99), HOT_LEAD), ACME_ADMIN, (404, "CONVERSATION_NOT_FOUND")),
        (pair(conv(1), MISSING), ACME_ADMIN, (404, "LABEL_NOT_FOUND")),
        (pair(conv(1), HOT_LEAD), ACME_OPERATOR_INBOX_2, (403, "LABEL_PERMISSION_DENIED")),
    ],
)
async def test_detach_errors(
    client: httpx.AsyncClient, body: dict[str, str], operator: str, expected: tuple[int, str]
) -> None:
    assert error_code(await link(client, "detach", body, operator)) == expected


@pytest.mark.parametrize("action", ["attach", "detach"])
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"conversation_id": conv(1)}, "VALIDATION_ERROR"),
        ({"label_id": HOT_LEAD}, "VALIDATION_ERROR"),
        (pair(conv(1), None), "VALIDATION_ERROR"),
        (pair(NIL_UUID, HOT_LEAD), "VALIDATION_ERROR"),
        (pair("nope", HOT_LEAD), "BAD_REQUEST"),
        (pair(1, HOT_LEAD), "BAD_REQUEST"),
    ],
)
async def test_attachment_body_validation(
    client: httpx.AsyncClient, action: str, body: dict[str, Any], code: str
) -> None:
    assert error_code(await link(client, action, body)) == (400, code)


async def test_attach_other_methods_are_not_label_ids(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/labels/attach", headers=as_caller(ACME_ADMIN))
    assert response.status_code == 405


async def test_other_methods_on_attach_and_detach_are_405(client: httpx.AsyncClient) -> None:
    """/labels/attach and /labels/detach are routes of their own, not label ids."""
    for action in ("attach", "detach"):
        for method in ("PUT", "DELETE"):
            response = await client.request(
                method, f"/api/v1/labels/{action}", headers=as_caller(ACME_ADMIN), json={}
            )
            assert (response.status_code, response.json()["error"]["code"]) == (
                405, "METHOD_NOT_ALLOWED"), (method, action)  # fmt: skip
            assert response.headers["Allow"] == "POST"


# ---- labels in every conversation response ----------------------------------------------


async def test_every_conversation_response_carries_its_labels(client: httpx.AsyncClient) -> None:
    """allocate, claim and the lifecycle transitions answer with the same shape as GET."""

    async def labels_of(conversation: str) -> list[str]:
        response = await client.get(
            f"/api/v1/conversations/{conversation}", headers=as_caller(ACME_MANAGER)
        )
        return [label.id.hex for label in Envelope[Conversation].model_validate(
            response.json()).data.labels]  # fmt: skip

    operator = as_caller(ACME_OPERATOR_INBOX_1)
    claimed = await client.post("/api/v1/claim", json={"conversation_id": conv(1)},
                                headers=operator)  # fmt: skip
    assert claimed.status_code == 200
    claim = Envelope[Allocation].model_validate(claimed.json()).data
    assert [label.id.hex for label in claim.labels] == [HOT_LEAD.replace("-", "")]

    # Claiming one's own conversation again returns it, labels included.
    again = await client.post("/api/v1/claim", json={"conversation_id": conv(1)},
                              headers=operator)  # fmt: skip
    assert Envelope[Allocation].model_validate(again.json()).data.labels == claim.labels

    allocated = await client.post("/api/v1/allocate", headers=operator)
    assert allocated.status_code == 200
    allocation = Envelope[Allocation].model_validate(allocated.json()).data
    assert [label.id.hex for label in allocation.labels] == await labels_of(str(allocation.id))

    resolved = await client.post("/api/v1/resolve", json={"conversation_id": conv(1)},
                                 headers=operator)  # fmt: skip
    assert resolved.status_code == 200
    resolve = Envelope[Lifecycle].model_validate(resolved.json()).data
    assert (resolve.state, resolve.labels) == ("RESOLVED", claim.labels)


async def test_a_moved_conversation_answers_with_the_labels_it_keeps(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/move_inbox",
        json={"conversation_id": conv(1), "inbox_id": INBOX_2},
        headers=as_caller(ACME_MANAGER),
    )
    assert response.status_code == 200
    moved = Envelope[Lifecycle].model_validate(response.json()).data
    assert (str(moved.inbox_id), moved.labels) == (INBOX_2, [])  # HOT_LEAD is inbox 1's
