"""The fake Bot API server now lives in the package (the demo runs it too); re-exported so test imports keep working."""

from chainwatch.devnet.botapi import (
    BOT_USER,
    BotApiServer,
    CallbackAnswer,
    Request,
    SentMessage,
    Update,
    running_bot_api,
)

__all__ = ["BOT_USER", "BotApiServer", "CallbackAnswer", "Request", "SentMessage", "Update", "running_bot_api"]
