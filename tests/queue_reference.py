"""The action queue as one statement that reads every lead in view (services/queue.py before it
was split by group): kept to check that the grouped reads return the same items, in the same order,
with the same counts (below the count cap)."""

from crm_app.db.queries import stuck_sql
from crm_app.services.queue import _OWNER, _WAITING

# Leads in view (`{where}`) with a fresh signal: the queue's first group, and the lead page's promise
# of a call.
FRESH_SQL = """
fresh AS (
    -- The newest request since our last contact within the window; or, without one, the lead
    -- turned Hot in the window after something the prospect did in it (an engine switch or a
    -- retrain that makes a quiet lead Hot is arithmetic, not intent). Only leads whose last
    -- engagement falls in the window can have either (a request is an engagement): a few percent,
    -- found through ix_leads_last_activity; the window's requests through ix_activities_requests.
    SELECT l.id, r.kind AS signal_kind, coalesce(r.occurred_at, l.last_activity_at) AS signal_at
      FROM leads l
      LEFT JOIN (
            SELECT DISTINCT ON (a.lead_id) a.lead_id, a.kind, a.occurred_at
              FROM activities a
             WHERE a.kind = ANY(:request_kinds) AND a.occurred_at > :fresh_cutoff AND a.occurred_at <= :now
             ORDER BY a.lead_id, a.occurred_at DESC
      ) r ON r.lead_id = l.id AND (l.last_contacted_at IS NULL OR r.occurred_at > l.last_contacted_at)
     WHERE l.last_activity_at > :fresh_cutoff
       AND l.stage = ANY(:open_stages) AND ({where})
       AND (l.snoozed_until IS NULL OR l.snoozed_until <= :now)
       AND (r.kind IS NOT NULL
            OR (l.tier = 'hot' AND l.hot_since > :fresh_cutoff AND l.last_activity_at <= :now
                AND (l.last_contacted_at IS NULL
                     OR l.last_contacted_at < least(l.hot_since, l.last_activity_at))))
)"""


# One row per lead with a reason to be in the queue, all its reasons as columns; its group is its
# first reason. The leads in view are read once (the rep's through their owner index), the fresh
# ones and the follow-ups due through their own indexes, and only the page's leads are read again
# for their words.
QUEUE_SQL = """
WITH {fresh},
follow_ups_due AS (
    -- A lead's earliest open follow-up that is due by the end of today.
    SELECT DISTINCT ON (f.lead_id) f.lead_id, f.id, f.due_at, f.note
      FROM follow_ups f
     WHERE f.done_at IS NULL AND f.due_at < :day_end
       AND (CAST(:owner_id AS integer) IS NULL OR f.owner_id = :owner_id)
     ORDER BY f.lead_id, f.due_at, f.id
),
in_view AS (
    SELECT {columns} FROM leads l WHERE l.stage = ANY(:open_stages) AND ({owner})
    UNION ALL  -- and a rep's promise on a lead that is not theirs (a pool lead)
    SELECT {columns} FROM follow_ups_due d JOIN leads l ON l.id = d.lead_id
     WHERE l.stage = ANY(:open_stages) AND ({owner}) IS NOT TRUE
),
reasons AS (
    SELECT l.id AS lead_id, l.score, l.deal_value, l.risk_points, f.signal_at, f.signal_kind,
           d.id AS follow_up_id, d.due_at, d.note,
           w.waiting AND l.tier = 'hot' AS hot,
           w.waiting AND l.risk_level = 'high' AS at_risk,
           w.waiting AND coalesce({stuck}, false) AS stuck
      FROM in_view l
      LEFT JOIN stage_rules r ON r.stage = l.stage
      LEFT JOIN fresh f ON f.id = l.id
      LEFT JOIN follow_ups_due d ON d.lead_id = l.id
      CROSS JOIN LATERAL (SELECT {waiting} AS waiting) w
),
best AS (
    -- The leads with a reason, each in the group of its first one.
    SELECT * FROM (
        SELECT *,
               CASE WHEN signal_at IS NOT NULL THEN 1 WHEN due_at < :now THEN 2 WHEN hot THEN 3
                    WHEN due_at IS NOT NULL THEN 4 WHEN at_risk THEN 5 WHEN stuck THEN 6 END AS grp
          FROM reasons
    ) grouped
     WHERE grp IS NOT NULL
),
counts AS (
    SELECT coalesce(json_object_agg(grp, n), '{{}}') AS by_group
      FROM (SELECT grp, count(*) AS n FROM best GROUP BY grp) g
),
page AS (
    SELECT * FROM best
     WHERE CAST(:grp AS integer) IS NULL OR grp = :grp
     ORDER BY grp,
              CASE WHEN grp = 1 THEN signal_at END DESC,  -- fresh: the newest signal first
              CASE WHEN grp = 4 THEN due_at END,          -- due today: the earliest first
              CASE WHEN grp = 5 THEN risk_points END DESC, score DESC, deal_value DESC, lead_id
     LIMIT :limit OFFSET :offset
)
SELECT c.by_group, p.*, l.name, l.company, l.tier, l.stage, l.stage_entered_at, l.version,
       l.last_contacted_at, l.risk_reasons, u.name AS owner_name, r.stagnation_days,
       e.kind AS last_kind, e.occurred_at AS last_at
  FROM counts c
  LEFT JOIN page p ON TRUE
  LEFT JOIN leads l ON l.id = p.lead_id
  LEFT JOIN users u ON u.id = l.owner_id
  LEFT JOIN stage_rules r ON r.stage = l.stage
  LEFT JOIN LATERAL (
        SELECT a.kind, a.occurred_at FROM activities a
         WHERE a.lead_id = l.id AND a.kind = ANY(:engagement_kinds) AND a.occurred_at <= :now
         ORDER BY a.occurred_at DESC LIMIT 1
  ) e ON TRUE
 ORDER BY p.grp,
          CASE WHEN p.grp = 1 THEN p.signal_at END DESC,
          CASE WHEN p.grp = 4 THEN p.due_at END,
          CASE WHEN p.grp = 5 THEN p.risk_points END DESC, p.score DESC, p.deal_value DESC, p.lead_id
""".format(fresh=FRESH_SQL.format(where=_OWNER), waiting=_WAITING, owner=_OWNER,
           stuck=stuck_sql("l.stage_entered_at", "r.stagnation_days"),
           columns="l.id, l.score, l.deal_value, l.risk_points, l.tier, l.risk_level, l.stage, "
                   "l.stage_entered_at, l.snoozed_until, l.last_contacted_at, l.last_activity_at")


