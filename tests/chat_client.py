"""A text-only room participant (no camera, no microphone: R1) that keeps the chat as a page does.

It joins, asks for the history after the last ``seq`` it saw, keeps live ``chat_message`` events,
and drops duplicates by ``seq``; after a reconnect it asks again from where it stopped.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import socketio
from peers import wait_for


class ChatClient:
    def __init__(self, url: str, token: str, visit_id: str) -> None:
        self.url = url
        self.token = token
        self.visit_id = visit_id
        self.sio = socketio.AsyncClient(reconnection=False)
        self.messages: dict[int, dict[str, Any]] = {}
        self.received: list[int] = []  # every seq as it arrived, duplicates included
        self.history_seqs: list[int] = []  # seqs that came through chat_history
        self.sio.on("chat_message", self._on_message)

    @property
    def last_seq(self) -> int:
        """The last seq with nothing missing before it."""
        seq = 0
        while seq + 1 in self.messages:
            seq += 1
        return seq

    def _keep(self, message: dict[str, Any]) -> None:
        self.received.append(message["seq"])
        self.messages.setdefault(message["seq"], message)

    def _on_message(self, message: dict[str, Any]) -> None:
        self._keep(message)

    async def call(self, event: str, data: Any = None) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(event, data, timeout=10)
        return ack

    async def connect(self) -> None:
        """Connect (again, after a drop: a new socket) and join, then catch up on the history."""
        if self.sio.connected:
            await self.sio.disconnect()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("chat_message", self._on_message)
        await self.sio.connect(
            self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=5
        )
        ack = await self.call("join", {"visit": self.visit_id})
        assert ack["ok"], ack
        await self.catch_up()

    async def catch_up(self, limit: int = 200) -> None:
        while True:
            ack = await self.call("chat_history", {"after": self.last_seq, "limit": limit})
            assert ack["ok"], ack
            for message in ack["messages"]:
                self.history_seqs.append(message["seq"])
                self._keep(message)
            if not ack["more"]:
                return

    async def say(self, text: str) -> dict[str, Any]:
        ack = await self.call("chat", {"text": text})
        assert ack["ok"], ack
        message: dict[str, Any] = ack["message"]
        return message

    async def upload(self, data: bytes, content_type: str = "image/jpeg") -> aiohttp.ClientResponse:
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                f"{self.url}/api/v1/visits/{self.visit_id}/chat/images",
                data=data,
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type},
            )
            await response.read()
            return response

    async def upload_json(self, data: bytes) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{self.url}/api/v1/visits/{self.visit_id}/chat/images",
                data=data,
                headers={"Authorization": f"Bearer {self.token}"},
            ) as response:
                body: dict[str, Any] = await response.json()
                assert response.status == 201, body
                return body

    async def wait_for_seq(self, seq: int, timeout: float = 10) -> None:
        await wait_for(lambda: self.last_seq >= seq, timeout, message=f"seq {seq} never came")

    def texts(self) -> list[str | None]:
        return [self.messages[s]["text"] for s in sorted(self.messages)]

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
