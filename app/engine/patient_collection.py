"""A MongoDB collection whose every operation waits out an outage, and may be repeated.

Each operation is one round trip, retried on its own by the store's :class:`Patience`
(so a method made of several operations never repeats one that already succeeded).
Repeating an operation whose first try reached the server but whose reply was lost
(the connection dropped in between) must not change the outcome, so:

- every update sets ``op`` (or the field its caller names: a document that several
  kinds of write change, a run's, gives each kind its own) to the call's token; a
  repeat that finds its filter no longer matching reads the document back, and if the
  field holds its own token, the first try was applied: it reports success (and, for
  ``find_one_and_update``, the document);
- every insert carries the token too; a repeat that meets a duplicate ``_id`` with its
  own token reports success, any other duplicate is a real one;
- reads return lists, read to the end inside the retry, never a cursor that could fail
  half-way through.

A counter (``$inc`` on a document that another writer may change in between) is the
one thing a token cannot make exact: a repeat after a lost reply may count twice. The
engine only counts where a lost or doubled count is made good by a resume (see
``Store.count_steps``); the joins it depends on are counted by marks in the same
document instead (``MongoStore.count_parent``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chordflow.engine.patience import Patience
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError

DUPLICATE_KEY = 11000


class PatientCollection:
    def __init__(self, collection: Collection[Any], patience: Patience):
        self.raw = collection
        self.patience = patience

    # -- reads ----------------------------------------------------------------------

    def find_one(self, query: Mapping[str, Any],
                 projection: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        return self.patience.call(lambda: self.raw.find_one(query, projection))

    def find(self, query: Mapping[str, Any], *, sort: Sequence[tuple[str, int]] | None = None,
             limit: int = 0, projection: Mapping[str, Any] | None = None,
             ) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            cursor = self.raw.find(query, projection)
            if sort:
                cursor = cursor.sort(list(sort))
            if limit:
                cursor = cursor.limit(limit)
            return list(cursor)

        return self.patience.call(read)

    # -- writes ---------------------------------------------------------------------

    def insert_one(self, doc: dict[str, Any]) -> None:
        """Insert; a duplicate ``_id`` raises DuplicateKeyError unless it is this call's
        own first try."""
        patience = self.patience

        def insert() -> None:
            mine = {**doc, "op": patience.token}
            try:
                self.raw.insert_one(mine)
            except DuplicateKeyError:
                if patience.retrying and self._is_mine(doc["_id"]):
                    return
                raise

        patience.call(insert)

    def insert_many(self, docs: list[dict[str, Any]], *,
                    ignore_duplicates: bool = False) -> None:
        """Insert documents with ids chosen by the caller (deterministic, or made once
        before the call); on a repeat every duplicate is taken for the first try's (and
        with ``ignore_duplicates`` always): the caller's ids are what makes that true."""
        if not docs:
            return
        patience = self.patience

        def insert() -> None:
            token = patience.token
            try:
                self.raw.insert_many([{**d, "op": token} for d in docs], ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                if ignore_duplicates or patience.retrying:
                    return  # the rest went in (unordered); duplicates are the first try's
                raise

        patience.call(insert)

    def update_one(self, query: Mapping[str, Any], update: Mapping[str, Any], *,
                   token: str | None = "op") -> bool:
        """Apply ``update`` to the document matching ``query`` (which names its
        ``_id``); True if this call changed it. ``token``: the field that tells a repeat
        whether its first try was applied (None: none, for a counter)."""
        patience = self.patience

        def apply() -> bool:
            result = self.raw.update_one(query, _with_op(update, token, patience.token))
            if result.modified_count == 1:
                return True
            return token is not None and patience.retrying and \
                self._is_mine(query["_id"], token)

        return patience.call(apply)

    def update_many(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> int:
        """An update that is the same whether applied once or twice (a status set on
        the documents still in the expected one)."""
        return self.patience.call(lambda: self.raw.update_many(query, update).modified_count)

    def find_one_and_update(self, query: Mapping[str, Any], update: Mapping[str, Any], *,
                            token: str | None = "op") -> dict[str, Any] | None:
        """The document as this call's update left it, or None if nothing matched
        (``token`` as for ``update_one``)."""
        patience = self.patience

        def apply() -> dict[str, Any] | None:
            mine = patience.token
            doc = self.raw.find_one_and_update(query, _with_op(update, token, mine),
                                               return_document=ReturnDocument.AFTER)
            if doc is None and token is not None and patience.retrying:
                doc = self.raw.find_one({"_id": query["_id"]})
                return doc if doc is not None and doc.get(token) == mine else None
            return doc

        return patience.call(apply)

    def find_one_and_delete(self, query: Mapping[str, Any],
                            sort: Sequence[tuple[str, int]]) -> dict[str, Any] | None:
        return self.patience.call(
            lambda: self.raw.find_one_and_delete(query, sort=list(sort)))

    def delete_one(self, query: Mapping[str, Any]) -> bool:
        return self.patience.call(lambda: self.raw.delete_one(query).deleted_count == 1)

    def delete_many(self, query: Mapping[str, Any]) -> None:
        self.patience.call(lambda: self.raw.delete_many(query))

    def create_index(self, keys: list[tuple[str, int]]) -> None:
        self.patience.call(lambda: self.raw.create_index(keys))

    def _is_mine(self, doc_id: Any, field: str = "op") -> bool:
        """Does the document carry this call's token (its first try was applied)?"""
        doc = self.raw.find_one({"_id": doc_id}, {field: 1})
        return doc is not None and doc.get(field) == self.patience.token


def _with_op(update: Mapping[str, Any], field: str | None, token: str) -> Mapping[str, Any]:
    if field is None:
        return update
    return {**update, "$set": {**update.get("$set", {}), field: token}}
