"""Vector search over a bot's chunk embeddings, in this process's memory.

Neither backend has a vector index the gateway can count on (pgvector is an extension few hosts allow), so each
bot's vectors are loaded once into one normalised float32 matrix and searched with a matrix product: 10,000
chunks of 1,536 dimensions are 61 MB and a search is a few milliseconds. The matrix is reloaded when the bot's
ready documents change (their count or latest update, read with each search: another process may have changed
them), and the least recently used bots' matrices go when the cache passes its byte budget.
numpy is imported on first use: a gateway without EMBEDDINGS_MODEL never loads it.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.storage.knowledge import KnowledgeStore


def encode_vector(vector: Sequence[float]) -> str:
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


@dataclass(slots=True)
class _Matrix:
    version: tuple[int, int]
    ids: list[int]
    matrix: Any  # numpy float32 (rows, dims), each row of unit length

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes)


class VectorIndex:
    def __init__(self, store: KnowledgeStore, model: str, *, max_bytes: int = 512 * 1024 * 1024) -> None:
        self._store = store
        self._model = model
        self._max_bytes = max_bytes
        self._bots: OrderedDict[str, _Matrix] = OrderedDict()

    async def nearest(self, bot_id: str, query: Sequence[float], limit: int) -> list[tuple[int, float]]:
        """The bot's chunks closest to `query` by cosine similarity, best first: (chunk id, similarity)."""
        import numpy as np

        loaded = await self._matrix(bot_id)
        if loaded is None or not loaded.ids:
            return []
        q = np.asarray(query, dtype=np.float32)
        if q.shape[0] != loaded.matrix.shape[1]:
            return []  # vectors of another model's size (EMBEDDINGS_MODEL changed): lexical search answers
        norm = float(np.linalg.norm(q))
        if norm == 0.0:
            return []
        similarity = loaded.matrix @ (q / norm)
        count = min(limit, len(loaded.ids))
        best = np.argpartition(-similarity, count - 1)[:count]
        best = best[np.argsort(-similarity[best], kind="stable")]
        return [(loaded.ids[i], float(similarity[i])) for i in best]

    async def has_vectors(self, bot_id: str) -> bool:
        """Whether the bot has any embedded chunk: without, a question is not worth embedding (nor paying for)."""
        loaded = await self._matrix(bot_id)
        return loaded is not None and bool(loaded.ids)

    async def _matrix(self, bot_id: str) -> _Matrix | None:
        import numpy as np

        version = await self._store.ready_version(bot_id)
        cached = self._bots.get(bot_id)
        if cached is not None and cached.version == version:
            self._bots.move_to_end(bot_id)
            return cached
        rows = await self._store.vectors(bot_id, self._model)
        ids = [chunk_id for chunk_id, _ in rows]
        decoded = [np.frombuffer(base64.b64decode(encoded), dtype="<f4") for _, encoded in rows]
        dims = {len(vector) for vector in decoded}
        if len(dims) > 1:  # vectors of two sizes: keep the most common, the others wait to be embedded again
            common = max(dims, key=lambda d: sum(1 for v in decoded if len(v) == d))
            kept = [(i, v) for i, v in zip(ids, decoded, strict=True) if len(v) == common]
            ids, decoded = [i for i, _ in kept], [v for _, v in kept]
        matrix = np.vstack(decoded).astype(np.float32) if decoded else np.zeros((0, 0), dtype=np.float32)
        if len(matrix):
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix = (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)
        loaded = _Matrix(version, ids, matrix)
        self._bots[bot_id] = loaded
        self._bots.move_to_end(bot_id)
        while sum(m.nbytes for m in self._bots.values()) > self._max_bytes and len(self._bots) > 1:
            self._bots.popitem(last=False)
        return loaded
