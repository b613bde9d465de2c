"""Small pieces that look the same on every page: score badges, tier pills, money."""

from __future__ import annotations

import reflex as rx

TIER_COLORS = {"hot": "tomato", "warm": "amber", "cold": "indigo"}


def tier_color(tier) -> rx.Var:
    return rx.match(tier, ("hot", "tomato"), ("warm", "amber"), "indigo")


def score_badge(score, tier, size: str = "2") -> rx.Component:
    """The score, coloured by its tier."""
    return rx.badge(
        score,
        color_scheme=tier_color(tier),
        variant="solid",
        radius="full",
        size=size,
        min_width="2.4em",
        justify_content="center",
        font_variant_numeric="tabular-nums",
        font_weight="700",
        class_name="score-badge",
    )


def tier_pill(tier) -> rx.Component:
    return rx.badge(
        rx.match(tier, ("hot", "Hot"), ("warm", "Warm"), "Cold"),
        color_scheme=tier_color(tier),
        variant="soft",
        radius="full",
    )


def signed_points(points) -> rx.Var:
    """"+30" or "-8": a model's reasons can push a score down as well as up."""
    return rx.cond(points >= 0, "+" + points.to_string(), points.to_string())


def points_color(points) -> rx.Var:
    return rx.cond(points >= 0, rx.color("grass", 11), rx.color("red", 11))
