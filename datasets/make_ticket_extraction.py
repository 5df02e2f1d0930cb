"""Generate the example dataset: support tickets -> JSON fields, in all three schemas.

    python datasets/make_ticket_extraction.py [--out datasets/ticket-extraction] [--rows 300]

The eval set of ``eval/ticket-extraction.yaml`` is the same generator with another seed
(no prompt overlaps the training rows; a test checks):

    python datasets/make_ticket_extraction.py --out eval/ticket-extraction --rows 60 \
        --seed 2026 --id-prefix eval --schemas openai

Deterministic: the same arguments always write the same bytes (a test checks the
shipped files against a fresh run). The rows are built as canonical conversations
and written by gekro-ft's own schema writers.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import orjson

from gekro_ft.atomic import atomic_output
from gekro_ft.data.conversation import Conversation, Turn, join_parts
from gekro_ft.data.schemas import SCHEMAS

INSTRUCTION = ("Extract the support ticket's fields as JSON with the keys customer, order_id, "
               "product, category (billing, shipping, technical or account) and urgency "
               "(low, normal or high). Use null for an order_id the ticket does not give.")

FIRST = ["Maria", "James", "Aisha", "Chen", "Lucas", "Sofia", "Omar", "Emma", "Ravi", "Hannah",
         "Diego", "Yuki", "Noah", "Fatima", "Liam", "Elena", "Kwame", "Ingrid", "Mateo", "Priya"]
LAST = ["Garcia", "Smith", "Khan", "Wei", "Martin", "Rossi", "Haddad", "Johnson", "Patel", "Muller",
        "Lopez", "Tanaka", "Brown", "Okafor", "Murphy", "Petrova", "Mensah", "Larsen", "Silva", "Iyer"]
PRODUCTS = ["AeroBook 14 laptop", "Pulse X earbuds", "HomeHub router", "Vista 27 monitor",
            "TrailRunner watch", "CloudSync subscription", "PixelPro camera", "QuietAir purifier",
            "SwiftCharge power bank", "StudioMic USB microphone", "Nimbus tablet", "FlexDesk standing desk"]

ISSUES = {
    "billing": ["I was charged twice for my {product}.",
                "The invoice for my {product} shows the wrong amount.",
                "My card was billed for the {product} but I cancelled it.",
                "I need a refund for the {product}; the discount code was not applied."],
    "shipping": ["My {product} has not arrived yet.",
                 "The tracking page for my {product} has not updated in a week.",
                 "The {product} was delivered to the wrong address.",
                 "The box with my {product} arrived damaged."],
    "technical": ["My {product} will not turn on after the latest update.",
                  "The {product} keeps disconnecting every few minutes.",
                  "I cannot pair the {product} with my phone.",
                  "The {product} shows an error code E42 on startup."],
    "account": ["I cannot log in to manage my {product}.",
                "Please change the email on the account linked to my {product}.",
                "My password reset link for the {product} portal does not work.",
                "I want to transfer the {product} to my partner's account."],
}
URGENCY = {
    "high": ["This is urgent, please help today.", "I need this fixed immediately.",
             "Please treat this as a priority, it is blocking my work."],
    "normal": ["Could you look into it?", "Please let me know what to do.",
               "Thanks in advance for your help."],
    "low": ["No rush, whenever you have time.", "It is not urgent.",
            "Just letting you know, no hurry."],
}
OPENERS = ["Hi,", "Hello support,", "Good morning,", "Dear team,", "Hey there,", ""]
ORDER_PHRASES = ["Order {order_id}.", "My order number is {order_id}.", "(order {order_id})",
                 "Ref: {order_id}."]
SIGN_OFFS = ["Regards, {name}", "Thanks, {name}", "- {name}", "{name}", "Best, {name}"]


def make_example(rng: random.Random) -> tuple[str, dict]:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    product = rng.choice(PRODUCTS)
    category = rng.choice(sorted(ISSUES))
    urgency = rng.choices(["high", "normal", "low"], weights=[3, 5, 2])[0]
    order_id = f"ORD-{rng.randint(10000, 99999)}" if rng.random() < 0.75 else None
    parts = [rng.choice(OPENERS), rng.choice(ISSUES[category]).format(product=product)]
    if order_id:
        parts.insert(rng.randint(1, 2), rng.choice(ORDER_PHRASES).format(order_id=order_id))
    parts += [rng.choice(URGENCY[urgency]), rng.choice(SIGN_OFFS).format(name=name)]
    ticket = " ".join(p for p in parts if p)
    fields = {"customer": name, "order_id": order_id, "product": product,
              "category": category, "urgency": urgency}
    return ticket, fields


def conversations(rows: int, seed: int, id_prefix: str = "ticket") -> list[tuple[Conversation, Conversation]]:
    """(chat form, alpaca form) per example: the chat form puts the instruction in the system
    message, the Alpaca form in ``instruction`` with the ticket as ``input``."""
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        ticket, fields = make_example(rng)
        answer = json.dumps(fields, ensure_ascii=False)
        extra = {"id": f"{id_prefix}-{i:04d}"}
        chat = Conversation(system=INSTRUCTION, turns=[Turn("user", ticket), Turn("assistant", answer)],
                            extra=extra)
        alpaca = Conversation(turns=[Turn("user", join_parts([INSTRUCTION, ticket]),
                                          parts=(INSTRUCTION, ticket)),
                                     Turn("assistant", answer)], extra=extra)
        out.append((chat, alpaca))
    return out


def write_all(out_dir: Path, rows: int = 300, seed: int = 7, id_prefix: str = "ticket",
              schemas: tuple[str, ...] = ("openai", "sharegpt", "alpaca")) -> None:
    examples = conversations(rows, seed, id_prefix)
    for schema in schemas:
        with atomic_output(out_dir / f"{schema}.jsonl") as f:
            for chat, alpaca in examples:
                row, _ = SCHEMAS[schema].write(alpaca if schema == "alpaca" else chat)
                f.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "ticket-extraction")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--id-prefix", default="ticket")
    parser.add_argument("--schemas", default="openai,sharegpt,alpaca")
    args = parser.parse_args()
    schemas = tuple(args.schemas.split(","))
    write_all(args.out, args.rows, args.seed, args.id_prefix, schemas)
    print(f"wrote {args.rows} rows in {len(schemas)} schemas to {args.out}")


if __name__ == "__main__":
    main()
