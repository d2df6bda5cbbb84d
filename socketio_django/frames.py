"""WebSocket frames (RFC 6455 section 5): building the server's, reading the client's."""

from __future__ import annotations

import struct

from .speedups import unmask

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# RFC 6455 close codes.
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_DATA, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A final, unmasked WebSocket frame (server to client) carrying ``payload``."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return header + payload


def close_frame(code: int) -> bytes:
    """A close frame carrying status ``code``."""
    return frame(struct.pack("!H", code), OP_CLOSE)


class ProtocolError(Exception):
    """The client broke RFC 6455; ``code`` is the status its close frame gets."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class FrameReader:
    """Turns the bytes a client sends into whole messages (RFC 6455 section 5).

    Client frames must be masked; fragmented messages are reassembled; text is
    decoded (strictly: invalid UTF-8 is an error); no message may exceed
    ``max_size`` bytes, which is checked before its payload is buffered. Each
    fragment kept for a message counts ``FRAGMENT_OVERHEAD`` bytes more, so a
    message of endless empty fragments reaches the limit as one of endless bytes does.
    """

    #: What one kept fragment costs against the limit on top of its payload: at most 1,024
    #: fragments in a 64 KB message (browsers send one frame per message).
    FRAGMENT_OVERHEAD = 64

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        #: The payload of the fragmented message being received, in one buffer: its
        #: memory is its bytes, however many fragments brought them.
        self._fragments = bytearray()
        #: Its size against the limit: payload, plus the overhead of each fragment.
        self._fragments_size = 0
        #: Its opcode, or None when no fragmented message is under way.
        self._message_opcode: int | None = None
        #: The first violation, once there is one.
        self.error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[tuple[int, bytes | str]]:
        """The frames ``data`` completes, as ``(opcode, payload)``: control frames, and data messages whole.

        A violation ends the list: what came before it is returned, and the
        violation is in :attr:`error` (nothing more is read after it).
        """
        messages: list[tuple[int, bytes | str]] = []
        if self.error is not None:
            return messages
        self._buffer += data
        try:
            self._parse(messages)
        except ProtocolError as error:
            self.error = error
        return messages

    def _parse(self, messages: list[tuple[int, bytes | str]]) -> None:
        buffer = self._buffer
        offset, end = 0, len(buffer)
        while end - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            if first & 0x70:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not second & 0x80:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "unmasked client frame")
            fin, opcode, length, header = first & 0x80, first & 0x0F, second & 0x7F, 2
            if length == 126:
                header = 4
            elif length == 127:
                header = 10
            if end - offset < header:
                break
            if header > 2:
                length = int.from_bytes(buffer[offset + 2 : offset + header], "big")
            if opcode >= OP_CLOSE:
                if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"reserved opcode {opcode}")
                if not fin or length > 125:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "fragmented or long control frame")
                if opcode == OP_CLOSE and length == 1:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame with half a status code")
            elif self._fragments_size + length > self.max_size:
                raise ProtocolError(
                    CLOSE_TOO_BIG,
                    f"message of more than {self.max_size} bytes (each fragment counts {self.FRAGMENT_OVERHEAD} more)",
                )
            start = offset + header + 4
            if end - start < length:
                break
            payload = unmask(buffer[start : start + length], bytes(buffer[start - 4 : start]))
            offset = start + length
            message = self._message(bool(fin), opcode, payload)
            if message is not None:
                messages.append(message)
        del buffer[:offset]

    def _message(self, fin: bool, opcode: int, payload: bytearray) -> tuple[int, bytes | str] | None:
        if opcode >= OP_CLOSE:
            return opcode, bytes(payload)
        if opcode == OP_CONTINUATION:
            if self._message_opcode is None:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation frame with no message to continue")
            opcode = self._message_opcode
        elif opcode not in (OP_TEXT, OP_BINARY):
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        elif self._message_opcode is not None:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        if not fin:
            self._message_opcode = opcode
            self._fragments += payload
            self._fragments_size += len(payload) + self.FRAGMENT_OVERHEAD
            return None
        data = payload
        if self._message_opcode is not None:  # the last fragment
            self._fragments += payload
            data = self._fragments
            self._fragments, self._fragments_size, self._message_opcode = bytearray(), 0, None
        if opcode == OP_BINARY:
            return OP_BINARY, bytes(data)
        try:
            return OP_TEXT, data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(CLOSE_INVALID_DATA, "text that is not UTF-8") from None
