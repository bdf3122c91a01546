"""Site tokens: shown once, stored hashed, revoked per site, seen by the service at once."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from collector.auth import TOKENS_FILE, TokenBook, TokenFileError, TokenStore, hash_token


def test_issue_stores_only_a_hash(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = store.issue("jun-0001")
    assert token.startswith("kipu_")
    assert len(token) > 40
    text = (tmp_path / TOKENS_FILE).read_text()
    assert token not in text
    assert hash_token(token) in text
    assert (tmp_path / TOKENS_FILE).stat().st_mode & 0o777 == 0o600


def test_the_book_follows_issue_and_revoke(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    book = TokenBook(tmp_path)
    assert not book.refresh()  # no file yet: an empty book
    first = store.issue("jun-0001")
    second = store.issue("jun-0001")  # a box being replaced: two at once
    other = store.issue("jun-0002")
    assert book.refresh()
    assert book.site_for(first) == book.site_for(second) == "jun-0001"
    assert book.site_for(other) == "jun-0002"
    assert book.site_for("kipu_guess") is None
    assert not book.refresh()  # unchanged
    assert store.revoke("jun-0001") == 2
    assert store.revoke("jun-0001") == 0
    assert book.refresh()
    assert book.site_for(first) is None
    assert book.site_for(second) is None
    assert book.site_for(other) == "jun-0002"
    listed = {(e.site_id, e.revoked is None) for e in store.entries()}
    assert listed == {("jun-0001", False), ("jun-0002", True)}


def test_concurrent_commands_lose_nothing(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    tokens: list[str] = []
    lock = threading.Lock()

    def issue(n: int) -> None:
        token = TokenStore(tmp_path).issue(f"site-{n}")
        with lock:
            tokens.append(token)

    threads = [threading.Thread(target=issue, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.entries()) == 20
    book = TokenBook(tmp_path)
    book.refresh()
    assert all(book.site_for(t) is not None for t in tokens)


def test_a_damaged_file_keeps_the_previous_book(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = store.issue("jun-0001")
    book = TokenBook(tmp_path)
    book.refresh()
    (tmp_path / TOKENS_FILE).write_text("{not json")
    assert not book.refresh()
    assert book.error is not None
    assert "damaged" in book.error
    assert book.site_for(token) == "jun-0001"
    with pytest.raises(TokenFileError, match="damaged"):
        store.issue("jun-0002")
    (tmp_path / TOKENS_FILE).write_text(json.dumps({"format": 1, "tokens": []}))
    assert book.refresh()
    assert book.error is None
    assert book.site_for(token) is None


def test_many_at_once(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    tokens = store.issue_many([f"jun-{n:04d}" for n in range(500)])
    book = TokenBook(tmp_path)
    book.refresh()
    assert all(book.site_for(token) == site for site, token in tokens.items())
    assert len(set(tokens.values())) == 500
