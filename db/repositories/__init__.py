"""Repository functions: each takes a Session, reads or writes rows, and never commits.

The caller owns the transaction (``with session_scope(factory) as session: ...``). Functions raise the
errors in db.errors for bad input a user can cause (unknown label, someone else's prediction, ...).
"""

from db.repositories.catalog import (
    add_equipment,
    add_tutorial,
    equipment_slugs,
    equipment_with_tutorial_counts,
    get_equipment,
    get_tutorial,
    list_equipment,
    list_tutorials,
    remove_tutorial,
    resolve_equipment,
    tutorials_for,
    update_equipment,
    youtube_search_url,
)
from db.repositories.corrections import (
    TrainingExample,
    apply_agreement,
    corrections_for_training,
    count_pending,
    get_correction,
    mark_corrections_trained,
    pending_corrections,
    record_correction,
    review_correction,
)
from db.repositories.model_versions import (
    current_champion,
    ensure_champion_recorded,
    list_model_versions,
    promotion_history,
    record_promotion,
    register_model_version,
)
from db.repositories.predictions import (
    confirm_prediction,
    get_owned_prediction,
    get_prediction,
    predictions_for_image,
    record_prediction,
    set_reply_message,
)
from db.repositories.stats import EquipmentStats, Stats, collect_stats
from db.repositories.users import ForgetResult, forget_user, get_user, upsert_user

__all__ = [
    "EquipmentStats",
    "ForgetResult",
    "Stats",
    "TrainingExample",
    "add_equipment",
    "add_tutorial",
    "apply_agreement",
    "collect_stats",
    "confirm_prediction",
    "corrections_for_training",
    "count_pending",
    "current_champion",
    "ensure_champion_recorded",
    "equipment_slugs",
    "equipment_with_tutorial_counts",
    "forget_user",
    "get_correction",
    "get_equipment",
    "get_owned_prediction",
    "get_prediction",
    "get_tutorial",
    "get_user",
    "list_equipment",
    "list_model_versions",
    "list_tutorials",
    "mark_corrections_trained",
    "pending_corrections",
    "predictions_for_image",
    "promotion_history",
    "record_correction",
    "record_prediction",
    "record_promotion",
    "register_model_version",
    "remove_tutorial",
    "resolve_equipment",
    "review_correction",
    "set_reply_message",
    "tutorials_for",
    "update_equipment",
    "upsert_user",
    "youtube_search_url",
]
