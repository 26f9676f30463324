"""The paper's prompt and the chat messages built from a record (one place for both)."""

from __future__ import annotations

from typing import Any

from migrl.records import Record

# The paper's instruction (Sec. 3.2), appended to every grounding question.
COT_SUFFIX = (
    "First output the thinking process in <think> </think> tags and then output the final answer in "
    "<answer> </answer> tags. Output the bounding box coordinates in JSON format."
)
# Plain SFT baseline and base models: answer only.
ANSWER_ONLY_SUFFIX = "Output the bounding box coordinates in JSON format."


def question_text(record: Record, cot: bool = True) -> str:
    suffix = COT_SUFFIX if cot else ANSWER_ONLY_SUFFIX
    return f"{record.question.strip()} {suffix}"


def user_message(record: Record, cot: bool = True) -> dict[str, Any]:
    """Images first, then the question, as MIG-Bench and Qwen2.5-VL's examples order them."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in record.images]
    content.append({"type": "text", "text": question_text(record, cot)})
    return {"role": "user", "content": content}


def assistant_message(text: str) -> dict[str, Any]:
    # A list of parts, like the user turn: TRL's assistant-only loss expects the same shape.
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def chat_messages(record: Record, cot: bool = True, with_response: bool = False) -> list[dict[str, Any]]:
    messages = [user_message(record, cot)]
    if with_response:
        if record.response is None:
            raise ValueError(f"record {record.id}: no response to train on")
        messages.append(assistant_message(record.response))
    return messages
