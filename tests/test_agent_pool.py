"""The agent pool with a fake clock: disabled agents, cooldowns and fallback choice."""

from orchestra_ci.agent_pool import AgentPool
from orchestra_ci.outcome import Verdict
from orchestra_ci.record import TaskRecord, new_record


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def task(agent: str = "claude", **fields: object) -> TaskRecord:
    record = new_record("t", agent, "p")
    record.update(fields)  # type: ignore[typeddict-item]
    return record


def pool(clock: Clock) -> AgentPool:
    return AgentPool({"claude": ["codex", "gemini"], "codex": [], "gemini": []}, clock)


def test_the_tasks_own_agent_while_it_is_usable() -> None:
    assert pool(Clock()).choose(task()) == "claude"


def test_a_switch_made_earlier_is_kept() -> None:
    assert pool(Clock()).choose(task(nextAgent="gemini")) == "gemini"


def test_a_fatal_error_disables_the_agent_and_hands_over_to_its_fallback() -> None:
    agents = pool(Clock())
    assert agents.note("claude", Verdict("fatal", "invalid api key"), 10.0) is None
    assert agents.disabled() == {"claude": "invalid api key"}
    assert agents.choose(task()) == "codex"
    agents.note("codex", Verdict("fatal", "quota"), 10.0)
    assert agents.choose(task()) == "gemini"
    agents.note("gemini", Verdict("fatal"), 10.0)
    assert agents.choose(task()) is None
    assert agents.unusable() == (
        "no usable agent: claude: invalid api key; codex: quota; gemini: fatal error"
    )


def test_a_rate_limit_cools_the_agent_down_until_the_clock_passes() -> None:
    clock = Clock()
    agents = pool(clock)
    assert agents.note("claude", Verdict("rate_limited", "429", retry_after=30.0), 10.0) == 30.0
    assert agents.cooling_until("claude") == 1_030.0
    clock.now = 1_029.9
    assert agents.cooling_until("claude") == 1_030.0
    clock.now = 1_030.0
    assert agents.cooling_until("claude") is None


def test_a_rate_limit_without_a_hint_waits_the_default() -> None:
    agents = pool(Clock())
    assert agents.note("codex", Verdict("rate_limited", "429"), 12.5) == 12.5
    assert agents.cooling_until("codex") == 1_012.5


def test_a_shorter_later_wait_does_not_cut_a_longer_cooldown() -> None:
    clock = Clock()
    agents = pool(clock)
    agents.note("claude", Verdict("rate_limited", retry_after=60.0), 10.0)
    clock.now += 10
    agents.note("claude", Verdict("rate_limited", retry_after=5.0), 10.0)
    assert agents.cooling_until("claude") == 1_060.0


def test_other_outcomes_change_nothing() -> None:
    agents = pool(Clock())
    for outcome in ("success", "failed", "timeout"):
        assert agents.note("claude", Verdict(outcome), 10.0) is None  # type: ignore[arg-type]
    assert agents.disabled() == {} and agents.cooling_until("claude") is None


def test_fallback_skips_the_current_agent_and_cooling_ones() -> None:
    clock = Clock()
    agents = pool(clock)
    agents.note("codex", Verdict("rate_limited", retry_after=60.0), 10.0)
    assert agents.fallback(task(), "claude") == "gemini"
    assert agents.fallback(task(), "claude", include_cooling=True) == "codex"
    clock.now += 60
    assert agents.fallback(task(), "claude") == "codex"


def test_fallback_goes_back_to_the_tasks_own_agent() -> None:
    assert pool(Clock()).fallback(task(), "codex") == "claude"


def test_a_disabled_agent_whose_fallbacks_are_cooling_is_waited_for() -> None:
    agents = pool(Clock())
    agents.note("claude", Verdict("fatal", "bad key"), 10.0)
    agents.note("codex", Verdict("rate_limited", retry_after=60.0), 10.0)
    agents.note("gemini", Verdict("rate_limited", retry_after=60.0), 10.0)
    assert agents.choose(task()) == "codex"  # the claim then waits for its cooldown


def test_an_agent_gone_from_the_config_has_no_fallback() -> None:
    agents = pool(Clock())
    assert agents.fallback(task("removed"), "removed") is None
    assert agents.fallback(task(), "claude", include_cooling=True) == "codex"


def spent(resets_at: float | None) -> Verdict:
    return Verdict("quota_exhausted", "quota exhausted: usage limit", resets_at=resets_at)


def test_a_quota_that_resets_inside_the_budget_pauses_only_that_agent() -> None:
    clock = Clock()
    agents = AgentPool({"claude": [], "codex": []}, clock, horizon=clock.now + 3600)
    assert agents.note("claude", spent(clock.now + 600), 10.0) == 600
    assert agents.cooling_until("claude") == clock.now + 600
    assert agents.cooling_until("codex") is None
    assert agents.choose(task()) == "claude"  # its tasks wait for it
    assert agents.exhausted()["claude"].paused
    clock.now += 601
    assert agents.cooling_until("claude") is None


def test_a_quota_that_resets_after_the_budget_takes_the_agent_out_and_its_tasks_wait() -> None:
    clock = Clock()
    agents = AgentPool({"claude": [], "codex": []}, clock, horizon=clock.now + 3600)
    assert agents.note("claude", spent(clock.now + 7200), 10.0) is None
    assert agents.choose(task()) is None
    assert agents.waits_for_quota(task())  # pending, not failed
    assert not agents.waits_for_quota(task("codex"))
    assert agents.disabled() == {}
    assert "claude: quota exhausted" in agents.unusable()


def test_a_task_whose_agent_is_out_of_quota_goes_to_its_fallback() -> None:
    agents = pool(Clock())
    agents.note("claude", spent(None), 10.0)
    assert agents.choose(task()) == "codex"
    assert agents.fallback(task(), "claude") == "codex"


def test_a_task_with_only_broken_agents_does_not_wait_for_quota() -> None:
    agents = pool(Clock())
    agents.note("claude", spent(None), 10.0)
    agents.note("codex", Verdict("fatal", "bad key"), 10.0)
    agents.note("gemini", Verdict("fatal", "bad key"), 10.0)
    assert agents.choose(task()) is None
    assert agents.waits_for_quota(task())  # claude's quota comes back; the others do not
    assert not agents.waits_for_quota(task("codex"))


def test_max_concurrent_slots_are_taken_and_given_back() -> None:
    agents = AgentPool({"claude": [], "codex": []}, Clock(), limits={"claude": 2, "codex": None})
    assert agents.acquire("claude") and agents.acquire("claude")
    assert not agents.acquire("claude")
    assert all(agents.acquire("codex") for _ in range(10))  # no limit of its own
    agents.release("claude")
    assert agents.acquire("claude")
