"""Conservation bookkeeping: when is a seed complete, and does it balance?"""

from schemas import DeadLetter, RejectedInstruction
from streams.ops.ledger import Ledger
from tests.unit.schemas.test_records import INSTRUCTION, RECORDS


def basic(index: int, siblings: int = 2):
    return INSTRUCTION.model_copy(
        update={"id": f"inst-{index}", "root_id": f"inst-{index}", "index": index, "siblings": siblings}
    )


def accepted(root: str):
    return RECORDS[4].model_copy(update={"id": f"pair-{root}", "root_id": root})


def test_a_seed_is_complete_when_every_basic_instruction_has_a_verdict():
    ledger = Ledger()
    ledger.add("basic", basic(0))
    ledger.add("basic", basic(1))
    ledger.add("accepted", accepted("inst-0"))
    account = ledger.account("seed-1")
    assert not account.complete
    ledger.add(
        "rejected",
        RejectedInstruction(
            id="r",
            seed_id="seed-1",
            parent_id="x",
            root_id="inst-1",
            iteration=4,
            instruction="x",
            gap=0,
            reason="easy",
        ),
    )
    assert account.complete and account.balanced
    assert account.summary() == "2 instructions: 1 accepted, 1 rejected, 0 duplicates, 0 dead-lettered"


def test_verdicts_before_all_basics_arrive_do_not_complete_a_seed():
    ledger = Ledger()
    ledger.add("basic", basic(0))
    ledger.add("accepted", accepted("inst-0"))
    assert not ledger.account("seed-1").complete  # siblings=2, only one basic seen


def test_replayed_records_are_counted_once():
    ledger = Ledger()
    for _ in range(3):
        ledger.add("basic", basic(0, siblings=1))
        ledger.add("accepted", accepted("inst-0"))
    account = ledger.account("seed-1")
    assert account.complete and account.balanced
    assert ledger.duplicates["accepted"] == 2


def test_a_root_with_two_verdicts_does_not_balance():
    ledger = Ledger()
    ledger.add("basic", basic(0, siblings=1))
    ledger.add("accepted", accepted("inst-0"))
    ledger.add(
        "deadletter",
        DeadLetter(
            id="d",
            seed_id="seed-1",
            parent_id="x",
            root_id="inst-0",
            stage="contrast",
            reason="r",
            error_class="E",
            original="",
        ),
    )
    assert not ledger.account("seed-1").balanced


def test_seed_level_dead_letters_complete_the_seed_and_unreadable_ones_are_counted_apart():
    ledger = Ledger()
    ledger.add(
        "deadletter",
        DeadLetter(
            id="d1",
            seed_id="seed-9",
            parent_id="seed-9",
            stage="encode",
            reason="unparsable",
            error_class="ParseFailure",
            original="",
        ),
    )
    ledger.add(
        "deadletter",
        DeadLetter(
            id="d2",
            seed_id="",
            parent_id=None,
            stage="encode",
            reason="not JSON",
            error_class="JSONDecodeError",
            original="",
        ),
    )
    assert ledger.account("seed-9").complete
    assert ledger.unattributed_dead == 1
    assert ledger.incomplete() == []


def duplicate(root: str, of: str):
    from schemas import DuplicateInstruction

    return DuplicateInstruction(
        id=f"duplicate-{root}",
        seed_id="seed-1",
        parent_id=root,
        root_id=root,
        metadata_id="meta-1",
        instruction="x",
        duplicate_of=of,
        duplicate_of_text="x",
        similarity=1.0,
        method="exact",
    )


def test_a_duplicate_is_a_verdict_of_its_own():
    ledger = Ledger()
    ledger.add("decoded", basic(0))
    ledger.add("decoded", basic(1))
    ledger.add("accepted", accepted("inst-0"))
    ledger.add("duplicates", duplicate("inst-1", of="inst-0"))
    account = ledger.account("seed-1")
    assert account.complete and account.balanced
    assert account.summary() == "2 instructions: 1 accepted, 0 rejected, 1 duplicates, 0 dead-lettered"
    ledger.add("accepted", accepted("inst-1"))  # a second verdict for a dropped root
    assert not account.balanced
