"""The agent runtime: one character, its memory, its models and plugins, turn after turn.

A turn (see docs/plugins.md for the full walk-through):
1. intake: ensure entity/room/participant (cached), store the message with its embedding
   under a deterministic id when the platform gives a message id;
2. decide: rules (bots, direct, mentions, client rules), else the small model;
3. compose: recent messages, relevant knowledge, facts about the sender, plugin providers
   and the offered actions, read concurrently; character parts come pre-rendered;
4. generate with the large model, parse tolerantly (a reply without tags is the text); only
   broken markup is asked again, once (parsing.ParseAttempts), then the raw text;
5. store the reply, run the chosen actions, then evaluators in the background.

Cancellation policy: the incoming message is stored before anything can be cancelled; a
turn cancelled before its reply is stored leaves no reply memory (never half a reply); once
storing the reply has begun it is shielded and completes, so a replay of the same platform
message returns that reply instead of generating a second one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import RuntimeFailure
from carrier_cli.llm.base import ChatMessage, ChatModel, GenerationParams
from carrier_cli.memory.types import Entity, Memory, MemoryKind, Room, stable_id
from carrier_cli.runtime import formatting
from carrier_cli.runtime.builtin_actions import builtin_actions
from carrier_cli.runtime.character_state import CharacterState
from carrier_cli.runtime.context import TurnContext
from carrier_cli.runtime.evaluators import FactEvaluator
from carrier_cli.runtime.parsing import (
    ParseAttempts,
    ParsedReply,
    StreamingTextExtractor,
    parse_reply,
    parse_should_respond,
    raw_fallback,
)
from carrier_cli.runtime.plugins import (
    Action,
    Evaluator,
    Plugin,
    Provider,
    discover_plugins,
    normalize_action_name,
)
from carrier_cli.runtime.rooms import RoomGates, TurnHooks
from carrier_cli.runtime.should_respond import name_pattern, rule_decision
from carrier_cli.runtime.templates import render, resolve_templates
from carrier_cli.runtime.types import (
    Decision,
    IncomingMessage,
    PromptRecord,
    TurnEvent,
    TurnLog,
    TurnResult,
)

if TYPE_CHECKING:
    from carrier_cli.character.model import Character
    from carrier_cli.config import Settings
    from carrier_cli.llm.factory import ModelConfig
    from carrier_cli.memory.store import MemoryStore

log = logging.getLogger("carrier.runtime")
turn_log = logging.getLogger("carrier.runtime.turn")

# Whole documents are left out: their fragments carry the same text in prompt-sized pieces.
KNOWLEDGE_KINDS = [MemoryKind.FRAGMENT, MemoryKind.LORE, MemoryKind.FACT]
KNOWLEDGE_ITEM_CHARS = 1200  # a single retrieved memory never floods the prompt


@dataclass
class _Generation:
    """Outcome of the reply generation, filled by `_generate` (an async generator)."""

    parsed: ParsedReply = field(default_factory=lambda: ParsedReply(text=None, ok=False))
    model_seconds: float = 0.0


@dataclass
class _Intake:
    room: Room
    entity: Entity
    memory: Memory
    seen_before: bool


class AgentRuntime:
    """Usable as a library: `await AgentRuntime.create(character, settings)`, then
    `await runtime.handle_message(IncomingMessage(...))` per message."""

    recent_count = 32
    knowledge_k = 5
    knowledge_threshold = 0.35
    sender_fact_limit = 12
    fact_cache_ttl = 60.0  # seconds
    plugin_timeout = 10.0  # seconds for a provider's get() or an action's validate()
    evaluator_timeout = 180.0  # seconds for one evaluator (it may call the model)
    turn_log_history = 50

    def __init__(
        self,
        character: Character,
        settings: Settings,
        *,
        store: MemoryStore,
        model: ChatModel,
        model_config: ModelConfig,
        agent_id: uuid.UUID,
        plugins: Sequence[Plugin] = (),
        owns_store: bool = False,
        owns_model: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.character = character
        self.settings = settings
        self.store = store
        self.model = model
        self.model_config = model_config
        self.agent_id = agent_id
        self.plugins = list(plugins)
        self._owns_store = owns_store
        self._owns_model = owns_model
        self.rng = rng or random.Random()
        self.templates = resolve_templates(character.templates)
        self.character_state = CharacterState(character, rng=self.rng)
        self._names = name_pattern(character)
        self.actions: list[Action] = [*builtin_actions()]
        self.providers: list[Provider] = []
        self.evaluators: list[Evaluator] = [FactEvaluator()]
        for plugin in self.plugins:
            self.actions.extend(plugin.actions)
            self.providers.extend(plugin.providers)
            self.evaluators.extend(plugin.evaluators)
        self._action_index: dict[str, Action] = {}
        for action in reversed(self.actions):  # earlier (built-in) names win on clashes
            for alias in (action.name, *action.similes):
                self._action_index[normalize_action_name(alias)] = action
        self._gates = RoomGates()
        self._rooms: dict[tuple[str, str], Room] = {}
        self._entities: dict[tuple[str, str], tuple[str, Entity]] = {}
        self._participants: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self._muted: set[uuid.UUID] = set()
        self._decisions: OrderedDict[uuid.UUID, TurnResult] = OrderedDict()
        self.room_message_counts: dict[uuid.UUID, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.turn_logs: deque[TurnLog] = deque(maxlen=self.turn_log_history)
        self.last_turn_log: TurnLog | None = None
        self._fact_cache: dict[uuid.UUID, tuple[float, list[Memory]]] = {}
        self._closed = False

    # ------------------------------------------------------------------ construction --
    @classmethod
    async def create(
        cls,
        character: Character,
        settings: Settings,
        *,
        store: MemoryStore | None = None,
        model: ChatModel | None = None,
        model_config: ModelConfig | None = None,
        provider: str | None = None,
        model_name: str | None = None,
        plugins: Sequence[Plugin] | None = None,
    ) -> AgentRuntime:
        """Open what is not given (store from settings, models via create_models), load
        plugins (entry points + the character's `plugins:`), ensure the agent row and ingest
        the character's knowledge (idempotent)."""
        owns_model = model is None
        if model is None:
            from carrier_cli.llm.factory import create_models

            model, model_config = create_models(settings, character, provider, model_name)
        elif model_config is None:
            model_config = default_model_config(character, model, model_name)
        assert model_config is not None
        loaded = discover_plugins(character.plugins, plugins or ())
        owns_store = store is None
        if store is None:
            from carrier_cli.memory.store import MemoryStore

            opened = MemoryStore.from_settings(settings)
            store = await opened if inspect.isawaitable(opened) else opened
        assert store is not None
        try:
            agent_id = await store.ensure_agent(character.name, character.id)
            runtime = cls(
                character,
                settings,
                store=store,
                model=model,
                model_config=model_config,
                agent_id=agent_id,
                plugins=loaded,
                owns_store=owns_store,
                owns_model=owns_model,
            )
            await runtime.ingest_knowledge()
        except BaseException:
            if owns_store:
                await _maybe_await(store.close())
            if owns_model:
                await model.aclose()
            raise
        return runtime

    async def ingest_knowledge(self) -> int:
        """Ingest the character's knowledge (files, directories and inline strings) through
        the memory layer, which chunks it into fragments and skips unchanged documents, so a
        restart adds nothing. Returns the number of documents added or replaced."""
        if not self.character.knowledge:
            return 0
        from carrier_cli.memory.knowledge import ingest_character_knowledge

        report = await ingest_character_knowledge(self.store, self.character)
        if report.skipped:
            log.warning("knowledge files without text were skipped: %s", ", ".join(report.skipped))
        return int(report.documents_added + report.documents_replaced)

    # ----------------------------------------------------------------------- public --
    async def handle_message(
        self, message: IncomingMessage, *, hooks: TurnHooks | None = None
    ) -> TurnResult:
        """Run one turn and return its result (replies are not streamed). `hooks` (see
        runtime/rooms.py): a client's bound on turns at once, a start callback, and delivery
        of the result while the message's room is still held."""
        result: TurnResult | None = None
        turn = self._turn_events(message, stream=False, hooks=hooks)
        try:
            async for event in turn:
                if event.kind == "done":
                    result = event.result
                    if hooks is not None and result is not None:
                        await hooks.finish(result)  # the turn is paused inside its room
        finally:
            await turn.aclose()
        assert result is not None
        return result

    def stream_message(self, message: IncomingMessage) -> AsyncIterator[TurnEvent]:
        """Like handle_message, yielding `delta` events with reply text as it is generated,
        then one `done` event. Close it (`aclosing`) if you stop early: the room is held
        until the generator finishes."""
        return self._turn_events(message, stream=True)

    def set_model(self, model_name: str) -> None:
        """Switch the large model (`/model NAME` in chat); same provider and key."""
        with_model = getattr(self.model_config, "with_model", None)
        if callable(with_model):
            self.model_config = with_model(model_name)
        else:  # pragma: no cover - a foreign config object
            from dataclasses import replace

            self.model_config = replace(self.model_config, large=model_name)

    async def _sender_facts(self, entity_id: uuid.UUID) -> list[Memory]:
        """Latest facts about a person, cached: facts change only when an evaluator stores
        one (which calls `forget_facts`), so most turns skip this query. The TTL bounds how
        long facts written by another process (e.g. `carrier memory`) stay unseen."""
        now = monotonic()
        cached = self._fact_cache.get(entity_id)
        if cached is not None and now - cached[0] < self.fact_cache_ttl:
            return cached[1]
        facts = await self.store.list(
            agent_id=self.agent_id,
            kinds=[MemoryKind.FACT],
            entity_id=entity_id,
            limit=self.sender_fact_limit,
        )
        if len(self._fact_cache) > 10_000:
            self._fact_cache.clear()
        self._fact_cache[entity_id] = (now, facts)
        return facts

    def forget_facts(self, entity_id: uuid.UUID | None = None) -> None:
        """Drop cached facts (of one person, or all) after storing or deleting facts."""
        if entity_id is None:
            self._fact_cache.clear()
        else:
            self._fact_cache.pop(entity_id, None)

    async def facts_about(self, entity_id: uuid.UUID) -> list[Memory]:
        """Facts the agent has stored about a person, oldest first."""
        facts = await self.store.list(
            agent_id=self.agent_id,
            kinds=[MemoryKind.FACT],
            entity_id=entity_id,
            limit=self.sender_fact_limit * 4,
        )
        return sorted(facts, key=lambda m: m.created_at or datetime.min.replace(tzinfo=UTC))

    async def wait_idle(self) -> None:
        """Wait for background evaluators (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.wait_idle()
        if self._owns_model:
            await self.model.aclose()
        if self._owns_store:
            await _maybe_await(self.store.close())

    async def generate_post(
        self, *, topic: str | None = None, extra_instructions: str | None = None
    ) -> str:
        """A post (e.g. an Instagram caption) in the character's post style."""
        values: dict[str, object] = dict(self.character_state.values(for_post=True))
        values["postTopic"] = (
            topic or values.get("topic") or f"whatever is on {self.character.name}'s mind"
        )
        values["extraInstructions"] = extra_instructions or ""
        prompt = render(self.templates["post_creation"], values)
        messages = [ChatMessage("system", self.character_state.system), ChatMessage("user", prompt)]
        params = self.model_config.params()
        raw = ""
        attempts = ParseAttempts("post")
        for attempt in attempts:
            started = perf_counter()
            raw = await self.model.complete(messages, params)
            log.debug(
                "post attempt %d (%.0f ms):\n%s", attempt, (perf_counter() - started) * 1000, raw
            )
            parsed = parse_reply(raw)
            if parsed.ok and parsed.text:  # plain text without tags included
                return parsed.text.strip().strip('"').strip()
            attempts.failed()  # broken markup, empty, or a silent choice: no post
        text = raw_fallback(raw)
        if not text:
            tries = "attempt" if attempts.failures == 1 else "attempts"
            raise RuntimeFailure(
                f"The model ({self.model_config.provider} {self.model_config.large}) returned "
                f"no usable post text after {attempts.failures} {tries}.",
                hint="Try again, or use a stronger model (--model).",
            )
        return text

    # ------------------------------------------------------------------------ intake --
    async def _room(self, message: IncomingMessage) -> Room:
        key = (message.source, message.room_key)
        room = self._rooms.get(key)
        if room is None:
            room = await self.store.ensure_room(
                self.agent_id, message.source, message.room_key, message.room_name
            )
            if len(self._rooms) > 10_000:
                self._rooms.clear()
            self._rooms[key] = room
        return room

    async def _entity(self, message: IncomingMessage) -> Entity:
        key = (message.source, message.sender_key)
        cached = self._entities.get(key)
        if cached is None or cached[0] != message.sender_name:
            entity = await self.store.ensure_entity(
                message.source, message.sender_key, message.sender_name
            )
            if len(self._entities) > 10_000:
                self._entities.clear()
            self._entities[key] = (message.sender_name, entity)
            return entity
        return cached[1]

    async def _intake(self, message: IncomingMessage) -> _Intake:
        room, entity = await asyncio.gather(self._room(message), self._entity(message))
        if (room.id, entity.id) not in self._participants:
            await self.store.ensure_participant(room.id, entity.id)
            self._participants.add((room.id, entity.id))
        if message.message_key:
            memory_id = stable_id(message.source, "message", message.message_key, self.agent_id)
        else:
            memory_id = uuid.uuid4()
        content: dict[str, Any] = {
            "text": message.text,
            "source": message.source,
            "name": message.sender_name,
        }
        if message.attachments:
            content["attachments"] = message.attachments
        metadata: dict[str, Any] = {"room_key": message.room_key, "sender_key": message.sender_key}
        if message.message_key:
            metadata["message_key"] = message.message_key
        memory = Memory(
            agent_id=self.agent_id,
            content=content,
            kind=MemoryKind.MESSAGE,
            room_id=room.id,
            entity_id=entity.id,
            id=memory_id,
            metadata=metadata,
        )
        stored = await self.store.add(memory, embed=bool(message.text.strip()), dedupe=True)
        # add() is idempotent on the id and hands back the row already stored for a replayed
        # id (a different object), saving a separate existence query on the hot path.
        seen = stored is not memory and message.message_key is not None
        if not seen:
            self.room_message_counts[room.id] = self.room_message_counts.get(room.id, 0) + 1
        return _Intake(room, entity, stored, seen_before=seen)

    def _reply_id(self, message: IncomingMessage, kind: str = "reply", *extra: object) -> uuid.UUID:
        if message.message_key:
            return stable_id(message.source, kind, message.message_key, self.agent_id, *extra)
        return uuid.uuid4()

    async def _replayed(self, message: IncomingMessage, memory: Memory) -> TurnResult | None:
        """The earlier result of a message seen before, if it was completed."""
        known = self._decisions.get(memory.id)
        if known is not None:
            return _replay_copy(known)
        reply = await self.store.get(self._reply_id(message))
        if reply is None:
            return None  # seen but never answered (interrupted): run the turn again
        content = reply.content
        actions = list(content.get("actions") or [])
        extra: list[str] = []
        for index in range(len(actions)):  # outputs of the actions, stored by position
            output = await self.store.get(self._reply_id(message, "action", index))
            if output is not None:
                extra.append(output.text)
        return TurnResult(
            decision=reply.metadata.get("decision", "RESPOND"),
            message_id=memory.id,
            text=reply.text,
            reply_id=reply.id,
            actions=actions,
            thought=content.get("thought"),
            extra_messages=extra,
            replayed=True,
        )

    def _remember(self, result: TurnResult) -> None:
        self._decisions[result.message_id] = result
        while len(self._decisions) > 2048:
            self._decisions.popitem(last=False)

    # -------------------------------------------------------------------------- turn --
    async def _turn_events(
        self, message: IncomingMessage, *, stream: bool, hooks: TurnHooks | None = None
    ) -> AsyncGenerator[TurnEvent, None]:
        started = perf_counter()
        timings: dict[str, float] = {}
        room = (message.source, message.room_key)
        async with self._gates.turn(room, lambda: self._intake(message), hooks) as turn:
            intake = turn.stored
            timings["intake"] = perf_counter() - started
            if intake.seen_before:
                replay = await self._replayed(message, intake.memory)
                if replay is not None:
                    timings["total"] = perf_counter() - started
                    replay.timings = timings
                    yield TurnEvent("done", result=replay)
                    return
            tlog = TurnLog(
                message_id=intake.memory.id,
                room_id=intake.room.id,
                started_at=datetime.now(UTC),
                timings=dict(timings),
            )
            finished = False
            try:
                respond = self._respond(message, intake, tlog, stream, started)
                async with _closing(respond):
                    async for event in respond:
                        finished = event.kind == "done"
                        yield event
            except (asyncio.CancelledError, GeneratorExit):
                # A consumer that closes the stream right after `done` interrupted nothing.
                tlog.interrupted = not finished
                raise
            finally:
                tlog.newer_messages = turn.newer_messages
                tlog.timings.update(timings)
                self.last_turn_log = tlog
                self.turn_logs.append(tlog)
                if turn_log.isEnabledFor(logging.DEBUG):
                    turn_log.debug("%s", tlog.render())

    async def _respond(
        self,
        message: IncomingMessage,
        intake: _Intake,
        tlog: TurnLog,
        stream: bool,
        started: float,
    ) -> AsyncIterator[TurnEvent]:
        timings = tlog.timings
        ctx = TurnContext(
            runtime=self,
            message=message,
            memory=intake.memory,
            room=intake.room,
            entity=intake.entity,
        )
        model_seconds = 0.0
        mark = perf_counter()
        decision = rule_decision(message, self._names)
        if decision in ("DIRECT", "MENTIONED"):
            self._muted.discard(intake.room.id)
        elif decision is None and intake.room.id in self._muted:
            decision = "IGNORE"
        recent: list[Memory] | None = None
        if decision is None:
            recent = self._turn_view(
                await self.store.recent(intake.room.id, n=self.recent_count), intake.memory
            )
            decision, seconds = await self._ask_should_respond(ctx, recent, tlog)
            model_seconds += seconds
            if decision == "STOP":
                self._muted.add(intake.room.id)
        ctx.decision = decision
        tlog.decision = decision
        timings["decide"] = perf_counter() - mark
        if decision in ("IGNORE", "STOP"):
            result = TurnResult(decision=decision, message_id=intake.memory.id)
            self._finish(ctx, result, tlog, started, model_seconds)
            yield TurnEvent("done", result=result)
            return

        mark = perf_counter()
        offered, conversation = await self._compose(ctx, recent)
        prompt = self._fit_prompt(ctx, conversation)
        timings["compose"] = perf_counter() - mark
        messages = [ChatMessage("system", self.character_state.system), ChatMessage("user", prompt)]

        mark = perf_counter()
        gen = _Generation()
        generation = self._generate(
            messages, self.model_config.params(), tlog, stream, gen, purpose="reply"
        )
        async with _closing(generation):
            async for delta in generation:
                yield TurnEvent("delta", text=delta)
        model_seconds += gen.model_seconds
        timings["generate"] = perf_counter() - mark
        parsed = gen.parsed
        ctx.thought = parsed.thought
        ctx.actions = parsed.actions

        result = TurnResult(
            decision=decision,
            message_id=intake.memory.id,
            actions=list(parsed.actions),
            thought=parsed.thought,
        )
        if parsed.text:
            mark = perf_counter()
            reply = Memory(
                agent_id=self.agent_id,
                content={
                    "text": parsed.text,
                    "source": message.source,
                    "name": self.character.name,
                    "actions": list(parsed.actions),
                    "thought": parsed.thought,
                    "in_reply_to": str(intake.memory.id),
                },
                kind=MemoryKind.MESSAGE,
                room_id=intake.room.id,
                entity_id=self.agent_id,
                id=self._reply_id(message),
                metadata={"decision": decision},
            )
            # Shielded: once started, the reply is stored even if the turn is cancelled now.
            ctx.reply = await asyncio.shield(self.store.add(reply, embed=True, dedupe=False))
            result.text = parsed.text
            result.reply_id = ctx.reply.id
            timings["store_reply"] = perf_counter() - mark
            mark = perf_counter()
            await self._run_actions(ctx, offered)
            result.extra_messages = list(ctx.outputs)
            timings["actions"] = perf_counter() - mark
        self._finish(ctx, result, tlog, started, model_seconds)
        yield TurnEvent("done", result=result)

    def _finish(
        self,
        ctx: TurnContext,
        result: TurnResult,
        tlog: TurnLog,
        started: float,
        model_seconds: float,
    ) -> None:
        total = perf_counter() - started
        tlog.timings["model"] = model_seconds
        tlog.timings["total"] = total
        tlog.timings["overhead"] = total - model_seconds
        result.timings = dict(tlog.timings)
        self._remember(result)
        self._schedule_evaluators(ctx)

    # -------------------------------------------------------------------- decide --
    async def _ask_should_respond(
        self, ctx: TurnContext, recent: list[Memory], tlog: TurnLog
    ) -> tuple[Decision, float]:
        values = dict(self.character_state.values())
        values["recentMessages"] = formatting.format_conversation(recent, max_chars=6000)
        values["senderName"] = ctx.message.sender_name
        prompt = render(self.templates["should_respond"], values)
        messages = [ChatMessage("system", self.character_state.system), ChatMessage("user", prompt)]
        params = self.model_config.params(small=True, temperature=0.2, max_tokens=64)
        seconds = 0.0
        word: str | None = None
        raw = ""
        attempts = ParseAttempts("should_respond")
        for attempt in attempts:
            record = PromptRecord(
                "should_respond",
                params.model,
                prompt,
                system=messages[0].content,
                attempt=attempt,
            )
            tlog.calls.append(record)
            with _timed(record):
                raw = await self.model.complete(messages, params)
            seconds += record.seconds
            record.output = raw
            answer = parse_should_respond(raw)
            word = answer.word
            if not answer.ok:  # tags without a decision (cut off) or nothing: ask once more
                tlog.parse_failures += 1
                attempts.failed()
        if word is None:
            log.debug("should-respond answer %r has no RESPOND/IGNORE/STOP; ignoring", raw[:200])
            word = "IGNORE"
        decision: Decision = (
            "RESPOND" if word == "RESPOND" else "STOP" if word == "STOP" else "IGNORE"
        )
        return decision, seconds

    # ------------------------------------------------------------------- compose --
    def _fit_prompt(self, ctx: TurnContext, conversation: list[Memory]) -> str:
        """Render the reply prompt, dropping the oldest conversation lines while the token
        estimate (which errs high, and counts CJK text right) exceeds the context window."""
        from carrier_cli.llm.tokens import estimate_tokens

        cfg = self.model_config
        limit = int(cfg.context_window) - int(cfg.max_tokens) - 64
        fixed = estimate_tokens(self.character_state.system)
        prompt = render(self.templates["message_handler"], ctx.state)
        while fixed + estimate_tokens(prompt) > limit and len(conversation) > 1:
            conversation = conversation[max(1, len(conversation) // 4) :]
            ctx.state["recentMessages"] = formatting.format_conversation(conversation)
            prompt = render(self.templates["message_handler"], ctx.state)
        return prompt

    async def _compose(
        self, ctx: TurnContext, recent: list[Memory] | None
    ) -> tuple[list[Action], list[Memory]]:
        """Fill ctx.state; returns the actions offered this turn (their validate passed)."""
        message = ctx.message
        recent_task = (
            self.store.recent(ctx.room.id, n=self.recent_count) if recent is None else _done(recent)
        )
        knowledge_task = (
            self.store.search(
                ctx.memory.embedding or message.text,
                agent_id=self.agent_id,
                k=self.knowledge_k,
                threshold=self.knowledge_threshold,
                kinds=KNOWLEDGE_KINDS,
            )
            if message.text.strip()
            else _done([])
        )
        facts_task = self._sender_facts(ctx.entity.id)
        provider_tasks = [self._run_provider(p, ctx) for p in self.providers]
        validations = [self._validate(a, ctx) for a in self.actions]
        results = await asyncio.gather(
            recent_task,
            knowledge_task,
            facts_task,
            asyncio.gather(*provider_tasks),
            asyncio.gather(*validations),
        )
        recent_memories, hits, facts, provided, valid = results
        recent_memories = self._turn_view(recent_memories, ctx.memory)
        offered = [a for a, ok in zip(self.actions, valid, strict=True) if ok]

        state = ctx.state
        state.update(self.character_state.values())
        sender_fact_ids = {f.id for f in facts}
        state["senderName"] = message.sender_name
        state["senderFacts"] = formatting.format_list(
            f"Facts about {message.sender_name}", [f.text for f in facts]
        )
        state["knowledge"] = formatting.format_list(
            "Relevant knowledge and memories",
            [
                _clip(h.memory.text, KNOWLEDGE_ITEM_CHARS)
                for h in hits
                if h.memory.id not in sender_fact_ids
            ],
        )
        state["currentTime"] = f"# Current time\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        state["roomName"] = ctx.room.name or ctx.message.room_key
        state["source"] = message.source
        state["messageText"] = message.text
        state["actions"] = formatting.format_actions(offered)
        state["actionNames"] = ", ".join(a.name for a in offered)
        plugin_examples = [a for a in offered if a.examples]
        state["actionExamples"] = formatting.format_action_examples(
            plugin_examples, self.character.name, self.rng
        )
        sections = []
        for output in provided:
            if isinstance(output, str) and output.strip():
                sections.append(output.strip())
            elif isinstance(output, dict):
                state.update({str(k): str(v) for k, v in output.items()})
        state["providers"] = "\n\n".join(sections)
        used = sum(len(v) for v in state.values()) + len(self.templates["message_handler"])
        state["recentMessages"] = formatting.format_conversation(
            recent_memories, max_chars=self._conversation_budget(used)
        )
        return offered, recent_memories

    def _turn_view(self, recent: list[Memory], own: Memory) -> list[Memory]:
        """Messages from others that arrived after this turn's message belong to later
        turns (which answer them); leaving them out here avoids answering them twice."""
        cutoff = own.created_at
        if cutoff is None:
            return recent
        return [
            m
            for m in recent
            if m.entity_id == self.agent_id or m.created_at is None or m.created_at <= cutoff
        ]

    def _conversation_budget(self, used_chars: int) -> int:
        """Characters left for the conversation: ~3 characters per token, minus the reply."""
        cfg = self.model_config
        window = int(getattr(cfg, "context_window", 8192) or 8192)
        budget_tokens = window - int(getattr(cfg, "max_tokens", 1024) or 1024) - 256
        return max(1000, budget_tokens * 3 - used_chars)

    async def _run_provider(self, provider: Provider, ctx: TurnContext) -> object:
        try:
            async with asyncio.timeout(self.plugin_timeout):
                return await provider.get(ctx)
        except TimeoutError:
            log.warning(
                "provider %s took over %.0f s; left out of this turn",
                provider.name,
                self.plugin_timeout,
            )
        except Exception as exc:
            log.warning("provider %s failed and is left out of this turn: %s", provider.name, exc)
        return None

    async def _validate(self, action: Action, ctx: TurnContext) -> bool:
        try:
            async with asyncio.timeout(self.plugin_timeout):
                return bool(await action.validate(ctx))
        except TimeoutError:
            log.warning(
                "action %s validate() took over %.0f s; not offered",
                action.name,
                self.plugin_timeout,
            )
        except Exception as exc:
            log.warning("action %s validate() failed; not offered: %s", action.name, exc)
        return False

    # ------------------------------------------------------------------ generate --
    async def _generate(
        self,
        messages: list[ChatMessage],
        params: GenerationParams,
        tlog: TurnLog,
        stream: bool,
        out: _Generation,
        *,
        purpose: str,
    ) -> AsyncIterator[str]:
        """The model call, asked once more only for broken markup (`ParseAttempts`); yields
        streamed text; the result lands in `out`."""
        raw = ""
        attempts = ParseAttempts(purpose)
        for attempt in attempts:
            record = PromptRecord(
                purpose,
                params.model,
                messages[-1].content,
                system=messages[0].content,
                attempt=attempt,
            )
            tlog.calls.append(record)
            extractor = StreamingTextExtractor()
            try:
                with _timed(record):
                    if stream:
                        parts: list[str] = []
                        chunks = self.model.stream(messages, params)
                        async with _closing(chunks):
                            async for chunk in chunks:
                                parts.append(chunk)
                                delta = extractor.feed(chunk)
                                if delta:
                                    yield delta
                        raw = "".join(parts)
                    else:
                        raw = await self.model.complete(messages, params)
            finally:
                out.model_seconds += record.seconds
            record.output = raw
            parsed = parse_reply(raw)
            if parsed.ok:
                if stream and parsed.text and not extractor.emitted_any:
                    yield parsed.text  # no <text> tag streamed (plain text, JSON): whole now
                out.parsed = parsed
                return
            tlog.parse_failures += 1
            # Text already shown while streaming: keep it rather than contradict it.
            attempts.failed(retry=not (stream and extractor.emitted_any))
        text = raw_fallback(raw)
        if stream and text:
            yield text
        out.parsed = ParsedReply(text=text or None, actions=["REPLY"] if text else [], ok=False)

    async def continue_turn(self, ctx: TurnContext) -> str | None:
        """One follow-up message after the reply (the CONTINUE action); at most one per turn."""
        if ctx.reply is None or ctx.continued:
            return None
        ctx.continued = True
        now = datetime.now(UTC)
        values = dict(ctx.state)
        values["recentMessages"] = (
            ctx.state.get("recentMessages", "") + "\n" + formatting.format_message(ctx.reply, now)
        )
        prompt = render(self.templates["message_handler"], values)
        prompt += (
            f"\n{self.character.name} chose CONTINUE: write only the follow-up message that "
            f"comes right after their last one, without repeating it."
        )
        messages = [ChatMessage("system", self.character_state.system), ChatMessage("user", prompt)]
        tlog = self.last_turn_log or TurnLog(ctx.memory.id, ctx.room.id, now)
        gen = _Generation()
        async for _ in self._generate(
            messages, self.model_config.params(), tlog, False, gen, purpose="continue"
        ):
            pass
        text = gen.parsed.text
        if not text or text.strip() == ctx.reply.text.strip():
            return None
        return text

    # ------------------------------------------------------------------- actions --
    def find_action(self, name: str) -> Action | None:
        return self._action_index.get(normalize_action_name(name))

    async def _run_actions(self, ctx: TurnContext, offered: list[Action]) -> None:
        offered_ids = {id(a) for a in offered}
        done: set[int] = set()
        for index, name in enumerate(ctx.actions):
            action = self.find_action(name)
            if action is None:
                log.debug("model chose unknown action %r; skipped", name)
                continue
            if id(action) not in offered_ids or id(action) in done:
                continue
            done.add(id(action))
            try:
                output = await action.handler(ctx)
            except Exception as exc:
                log.warning("action %s failed: %s", action.name, exc, exc_info=log.isEnabledFor(10))
                continue
            if output:
                await self._store_output(ctx, action, output, index)

    async def _store_output(self, ctx: TurnContext, action: Action, text: str, index: int) -> None:
        message = ctx.message
        memory_id = self._reply_id(message, "action", index)
        memory = Memory(
            agent_id=self.agent_id,
            content={
                "text": text,
                "source": message.source,
                "name": self.character.name,
                "actions": [action.name],
                "in_reply_to": str(ctx.memory.id),
            },
            kind=MemoryKind.MESSAGE,
            room_id=ctx.room.id,
            entity_id=self.agent_id,
            id=memory_id,
        )
        await asyncio.shield(self.store.add(memory, embed=True, dedupe=False))
        ctx.outputs.append(text)

    # ---------------------------------------------------------------- evaluators --
    def _schedule_evaluators(self, ctx: TurnContext) -> None:
        if not self.evaluators or self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._run_evaluators(ctx))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_evaluators(self, ctx: TurnContext) -> None:
        for evaluator in self.evaluators:
            try:
                async with asyncio.timeout(self.evaluator_timeout):
                    if await evaluator.validate(ctx):
                        await evaluator.handler(ctx)
            except Exception as exc:  # TimeoutError included
                log.warning(
                    "evaluator %s failed: %s",
                    evaluator.name,
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )

    async def complete_small(
        self, prompt: str, *, purpose: str, tlog: TurnLog | None = None, max_tokens: int = 512
    ) -> str:
        """A small-model call with the character's system prompt (used by evaluators)."""
        messages = [ChatMessage("system", self.character_state.system), ChatMessage("user", prompt)]
        params = self.model_config.params(small=True, temperature=0.2, max_tokens=max_tokens)
        began = perf_counter()
        raw = await self.model.complete(messages, params)
        if tlog is not None:
            tlog.calls.append(
                PromptRecord(
                    purpose, params.model, prompt, output=raw, seconds=perf_counter() - began
                )
            )
        log.debug("%s (%s): %s", purpose, params.model, raw[:500])
        return raw


def default_model_config(
    character: Character, model: ChatModel, model_name: str | None = None
) -> ModelConfig:
    """A config for a model object handed in directly (tests, benches, embedding apps)."""
    from carrier_cli.llm.factory import ModelConfig

    cm = character.model
    large = model_name or cm.name or "default"
    return ModelConfig(
        provider=getattr(model, "name", "custom"),
        large=large,
        small=cm.small or large,
        temperature=cm.temperature,
        max_tokens=cm.max_tokens,
    )


def _replay_copy(result: TurnResult) -> TurnResult:
    from dataclasses import replace

    return replace(result, replayed=True, timings={})


@asynccontextmanager
async def _closing(iterator: AsyncIterator[Any]) -> AsyncIterator[AsyncIterator[Any]]:
    """Close a nested async generator when the outer one stops early (a consumer that
    breaks out of a stream, Ctrl-C): the model's HTTP stream is released at once."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


@contextmanager
def _timed(record: PromptRecord) -> Iterator[None]:
    """One model call, timed into its prompt-log record, with its error (scrubbed) there
    too when it fails or is cancelled."""
    began = perf_counter()
    try:
        yield
    except BaseException as exc:
        record.error = _describe_error(exc)
        raise
    finally:
        record.seconds = perf_counter() - began


def _describe_error(exc: BaseException) -> str:
    """For the prompt log, which `/debug` prints: never a secret."""
    from carrier_cli.state import scrub

    return scrub(f"{type(exc).__name__}: {exc}")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


async def _done(value: Any) -> Any:
    return value


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value
