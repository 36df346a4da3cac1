-- The race rule, version 2 (docs/design.md), as one DuckDB query over a collector archive.
--
-- Parameters: $file (path or glob of OTLP JSON lines), $tolerance_ns (the skew tolerance, default 5 ms).
-- One row per judged load that is not plainly clean: (category, load_span_id, module_id), plus one
-- 'loads' row with the count of loads judged.
--
-- What an experienced user writes: read_ndjson with explicit columns and records=true (no schema
-- inference over the whole file), the three OTLP levels unnested in the select list (a lateral
-- FROM f, unnest(...) is 5x slower), the flattened spans materialized once (else every grouping
-- re-reads the file), then groupings and joins. The flattening keeps only what the rule reads
-- (a database statement's first word, the lifecycle attributes), not whole attribute lists; and
-- maximum_object_size stays at its default: DuckDB sizes its read buffers from it, per thread
-- (256 MiB there took the peak at 1M spans from 0.8 to 1.3 GB).
--
-- Not covered (the generated archives have none): span links (`matched_by: link`), duplicate span
-- ids across re-exported batches, the 256-character cut of module ids, versions written as text
-- (`races` orders decimal texts and LSNs as positions and leaves other unequal texts undecided;
-- this query compares texts as strings), nested loads of one module in one trace whose queries
-- are not their requests' children (`races` gives such a query to the innermost request).

WITH
lines AS (
    SELECT unnest(resourceSpans) AS rs
    FROM read_ndjson(
        $file,
        records = true,
        format = 'newline_delimited',
        columns = {
            'resourceSpans': 'STRUCT(
                resource STRUCT(attributes STRUCT(key VARCHAR, value STRUCT(stringValue VARCHAR))[]),
                scopeSpans STRUCT(spans STRUCT(
                    traceId VARCHAR, spanId VARCHAR, parentSpanId VARCHAR, name VARCHAR, kind INTEGER,
                    startTimeUnixNano BIGINT, endTimeUnixNano BIGINT,
                    attributes STRUCT(key VARCHAR, value STRUCT(
                        stringValue VARCHAR, intValue VARCHAR, boolValue BOOLEAN, doubleValue DOUBLE))[],
                    status STRUCT(code INTEGER))[])[])[]'
        }
    )
),
scopes AS (
    SELECT
        list_filter(rs.resource.attributes, lambda a: a.key = 'service.name')[1].value.stringValue AS service,
        coalesce(list_filter(rs.resource.attributes, lambda a: a.key = 'service.instance.id')[1].value.stringValue, '')
            AS instance,
        coalesce(
            list_filter(rs.resource.attributes, lambda a: a.key = 'host.id')[1].value.stringValue,
            list_filter(rs.resource.attributes, lambda a: a.key = 'host.name')[1].value.stringValue,
            ''
        ) AS host,
        unnest(rs.scopeSpans) AS ss
    FROM lines
),
-- Every span the rule reads (lifecycle spans, CLIENT and SERVER spans), flattened once.
spans AS (
    SELECT * FROM (
        SELECT
            service, instance, host,
            CASE WHEN host <> '' THEN 'host:' || host
                 WHEN instance <> '' THEN 'process:' || instance
                 ELSE 'service:' || coalesce(service, '') END AS clock,
            unnest(ss.spans, recursive := false) AS sp
        FROM scopes
    )
    WHERE sp.kind IN (2, 3) OR sp.name IN (
        'module_create_start', 'module_create_db_commit', 'module_create_cache_update',
        'module_load_request', 'module_load_db_query')
),
flat AS MATERIALIZED (
    SELECT
        service, instance, host, clock,
        lower(sp.traceId) AS trace_id,
        lower(sp.spanId) AS span_id,
        lower(coalesce(sp.parentSpanId, '')) AS parent_id,
        sp.name AS name,
        coalesce(sp.kind, 0) AS kind,
        sp.startTimeUnixNano AS s,
        sp.endTimeUnixNano AS e,
        coalesce(sp.status.code, 0) AS code,
        -- only what the rule reads, not the attribute lists: the materialized table stays small
        CASE WHEN sp.kind = 3 AND coalesce(sp.parentSpanId, '') <> ''
                  AND len(list_filter(sp.attributes, lambda a: a.key IN ('db.system.name', 'db.system'))) > 0
             THEN upper(rtrim(regexp_extract(ltrim(coalesce(
                nullif(list_filter(sp.attributes, lambda a: a.key = 'db.operation.name')[1].value.stringValue, ''),
                nullif(list_filter(sp.attributes, lambda a: a.key = 'db.operation')[1].value.stringValue, ''),
                nullif(list_filter(sp.attributes, lambda a: a.key = 'db.query.text')[1].value.stringValue, ''),
                nullif(list_filter(sp.attributes, lambda a: a.key = 'db.statement')[1].value.stringValue, ''),
                sp.name), ' ('), '^(\S+)'), ';')) END AS db_head,
        CASE WHEN sp.name IN ('module_create_start', 'module_create_db_commit', 'module_create_cache_update',
                              'module_load_request', 'module_load_db_query')
             THEN list_filter(sp.attributes, lambda a: a.key IN (
                'module.id', 'module.cancelled', 'module.data.found', 'module.data.observed_version',
                'module.cache.hit', 'module.data.version', 'module.cache.version')) END AS attrs
    FROM spans
),
-- Clock offset bounds from client/server pairs: theta = clock(B) - clock(A) for A < B, stored once.
pairs AS (
    SELECT
        CASE WHEN c.clock < sv.clock THEN c.clock ELSE sv.clock END AS a,
        CASE WHEN c.clock < sv.clock THEN sv.clock ELSE c.clock END AS b,
        CASE WHEN c.clock < sv.clock THEN sv.s - c.e ELSE -(sv.s - c.s) END AS low,
        CASE WHEN c.clock < sv.clock THEN sv.s - c.s ELSE -(sv.s - c.e) END AS high
    FROM flat sv JOIN flat c ON sv.parent_id = c.span_id
    WHERE sv.kind = 2 AND c.kind = 3 AND sv.parent_id <> '' AND sv.clock <> c.clock
),
bounds AS (
    SELECT a, b, max(low) AS low, min(high) AS high FROM pairs GROUP BY a, b HAVING max(low) <= min(high)
),
-- The first database statement under each parent that is a read (not BEGIN/COMMIT/SET/connect...).
statements AS (
    SELECT parent_id, s, e, db_head AS head FROM flat WHERE db_head IS NOT NULL
),
db_reads AS (
    SELECT parent_id, arg_min(s, s) AS s, arg_min(e, s) AS e
    FROM statements
    WHERE head NOT IN ('BEGIN', 'COMMIT', 'ROLLBACK', 'SAVEPOINT', 'RELEASE', 'SET', 'START', 'CONNECT', 'SHOW')
    GROUP BY parent_id
),
-- Lifecycle spans with the attributes the rule reads.
lifecycle AS MATERIALIZED (
    SELECT * EXCLUDE (mid),
        coalesce(mid.stringValue, mid.intValue, CASE mid.boolValue WHEN true THEN 'True' WHEN false THEN 'False' END,
                 CAST(mid.doubleValue AS VARCHAR)) AS module_id
    FROM (
        SELECT
            f.*,
            CASE name
                WHEN 'module_create_start' THEN 'create_start' WHEN 'module_create_db_commit' THEN 'db_commit'
                WHEN 'module_create_cache_update' THEN 'cache_update' WHEN 'module_load_request' THEN 'load_request'
                ELSE 'load_db_query' END AS stage,
            list_filter(attrs, lambda a: a.key = 'module.id')[1].value AS mid,
            code = 2 OR coalesce(list_filter(attrs, lambda a: a.key = 'module.cancelled')[1].value.boolValue, false)
                AS failed,
            list_filter(attrs, lambda a: a.key = 'module.data.found')[1].value.boolValue AS found,
            list_filter(attrs, lambda a: a.key = 'module.data.observed_version')[1].value AS observed,
            list_filter(attrs, lambda a: a.key = 'module.cache.hit')[1].value.boolValue AS cache_hit,
            list_filter(attrs, lambda a: a.key IN ('module.data.version', 'module.cache.version'))[1].value AS version
        FROM flat f
        WHERE name IN ('module_create_start', 'module_create_db_commit', 'module_create_cache_update',
                       'module_load_request', 'module_load_db_query')
    )
    WHERE module_id IS NOT NULL AND module_id <> ''
    QUALIFY row_number() OVER (PARTITION BY module_id, span_id) = 1
),
-- Creations: per module and trace, when it started and its first successful commit and cache update.
creations AS (
    SELECT
        module_id, trace_id,
        coalesce(min(s) FILTER (stage = 'create_start'), min(s) FILTER (stage IN ('db_commit', 'cache_update')), 0)
            AS started,
        arg_min({'span_id': span_id, 's': s, 'e': e, 'instance': instance, 'host': host, 'clock': clock,
                 'version': version}, s) FILTER (stage = 'db_commit' AND NOT failed) AS commit_ok,
        arg_min({'span_id': span_id, 's': s, 'e': e, 'instance': instance, 'host': host, 'clock': clock,
                 'version': version}, s) FILTER (stage = 'cache_update' AND NOT failed) AS cache_ok
    FROM lifecycle
    WHERE stage IN ('create_start', 'db_commit', 'cache_update')
    GROUP BY module_id, trace_id
),
requests AS (SELECT * FROM lifecycle WHERE stage = 'load_request'),
queries AS (
    SELECT q.*, EXISTS (
        SELECT 1 FROM requests r WHERE r.module_id = q.module_id AND r.span_id = q.parent_id) AS is_child
    FROM lifecycle q WHERE stage = 'load_db_query'
),
-- A request reads in its first child query; with no child, the first query of its trace that
-- started inside it whose parent is no request of the module (through another service).
request_candidates AS (
    SELECT r.span_id AS request_id, r.module_id, q.span_id AS query_id, q.s, q.is_child
    FROM requests r JOIN queries q ON q.module_id = r.module_id
     AND ((q.is_child AND q.parent_id = r.span_id)
          OR (NOT q.is_child AND q.trace_id = r.trace_id AND q.s BETWEEN r.s AND r.e))
),
chosen AS (
    SELECT request_id, module_id,
           -- children first: strays count only for a request with no child query
           arg_min(query_id, (NOT is_child, s)) AS query_id,
           bool_or(is_child) AS has_child
    FROM request_candidates GROUP BY request_id, module_id
),
claimed AS (  -- strays claimed by a request that has no child query
    SELECT DISTINCT c.query_id FROM request_candidates c JOIN chosen h USING (request_id, module_id)
    WHERE NOT h.has_child AND NOT c.is_child
),
loads AS (
    SELECT
        r.module_id, r.span_id AS load_span_id, r.trace_id,
        r.failed OR coalesce(q.failed, false) AS failed,
        coalesce(q.found, r.found) AS found,
        coalesce(q.observed, r.observed) AS observed,
        coalesce(q.cache_hit, r.cache_hit) AS cache_hit,
        CASE WHEN q.span_id IS NULL THEN r.s ELSE coalesce(d.s, q.s) END AS rs,
        CASE WHEN q.span_id IS NULL THEN r.e ELSE coalesce(d.e, q.e) END AS re,
        coalesce(q.instance, r.instance) AS instance,
        coalesce(q.host, r.host) AS host,
        coalesce(q.clock, r.clock) AS clock
    FROM requests r
    LEFT JOIN chosen h ON h.request_id = r.span_id AND h.module_id = r.module_id
    LEFT JOIN queries q ON q.span_id = h.query_id AND q.module_id = r.module_id
    LEFT JOIN db_reads d ON d.parent_id = q.span_id
    UNION ALL
    SELECT
        q.module_id, q.span_id, q.trace_id, q.failed, q.found, q.observed, q.cache_hit,
        coalesce(d.s, q.s), coalesce(d.e, q.e), q.instance, q.host, q.clock
    FROM queries q
    LEFT JOIN db_reads d ON d.parent_id = q.span_id
    WHERE NOT q.is_child AND q.span_id NOT IN (SELECT query_id FROM claimed)
),
-- The creation each load is judged against: its own trace's, else by module id the latest one
-- that began before the read (else the earliest).
matched AS (
    SELECT l.*, CASE WHEN c.module_id IS NULL THEN NULL ELSE c END AS creation
    FROM loads l LEFT JOIN creations c ON c.module_id = l.module_id
    QUALIFY row_number() OVER (
        PARTITION BY l.load_span_id, l.module_id
        ORDER BY (c.trace_id = l.trace_id) DESC, (c.started <= l.rs) DESC,
                 CASE WHEN c.started <= l.rs THEN -c.started ELSE c.started END) = 1
),
stages AS (
    SELECT m.*, 'db_commit' AS stage, m.creation.commit_ok AS rec FROM matched m WHERE m.creation.commit_ok IS NOT NULL
    UNION ALL
    SELECT m.*, 'cache_update', m.creation.cache_ok FROM matched m WHERE m.creation.cache_ok IS NOT NULL
),
bounded AS (
    SELECT st.*,
        CASE
            WHEN (st.instance <> '' AND st.instance = st.rec.instance) OR (st.host <> '' AND st.host = st.rec.host)
                THEN [0, 0]
            -- theta = clock(read) - clock(stage)
            WHEN st.rec.clock < st.clock THEN (SELECT [b.low, b.high] FROM bounds b WHERE b.a = st.rec.clock AND b.b = st.clock)
            ELSE (SELECT [-b.high, -b.low] FROM bounds b WHERE b.a = st.clock AND b.b = st.rec.clock)
        END AS bound
    FROM stages st
),
judged AS (
    SELECT *,
        CASE
            WHEN stage = 'db_commit' THEN CASE
                WHEN found = false THEN false
                WHEN observed IS NOT NULL AND rec.version IS NOT NULL THEN NOT (
                    CASE WHEN observed.intValue IS NOT NULL AND rec.version.intValue IS NOT NULL
                         THEN CAST(observed.intValue AS HUGEINT) < CAST(rec.version.intValue AS HUGEINT)
                         WHEN observed.stringValue IS NOT NULL AND rec.version.stringValue IS NOT NULL
                         THEN observed.stringValue < rec.version.stringValue
                         ELSE CAST(observed AS VARCHAR) <> CAST(rec.version AS VARCHAR) END)
                WHEN found = true THEN true
                END
            ELSE cache_hit
        END AS saw,
        rec.s - re AS margin,
        rs - rec.e AS after,
        coalesce(bound[1], -$tolerance_ns) AS low,
        coalesce(bound[2], $tolerance_ns) AS high
    FROM bounded
),
verdicts AS (
    SELECT *,
        CASE
            WHEN saw = true THEN 'clean'
            WHEN saw = false THEN CASE WHEN after - high > 0 THEN 'stale_read' ELSE 'race' END
            WHEN margin + low > 0 THEN 'race'
            WHEN after - high > 0 THEN 'clean'
            ELSE 'ambiguous' END AS verdict,
        saw = true AND margin + low > 0 AS contradicted,
        CASE WHEN saw IS NULL AND NOT (margin + low > 0) AND NOT (after - high > 0)
             THEN CASE WHEN margin + high > 0 OR after - low > 0 THEN 'clock' ELSE 'overlap' END END AS reason
    FROM judged
),
per_load AS (
    SELECT load_span_id, module_id,
        CASE WHEN bool_or(verdict = 'race') THEN 'races'
             WHEN bool_or(verdict = 'stale_read') THEN 'stale_reads'
             WHEN bool_or(verdict = 'ambiguous') THEN 'ambiguous'
             ELSE 'clean' END AS category,
        bool_or(contradicted) AS contradicted
    FROM verdicts GROUP BY load_span_id, module_id
)
SELECT category, load_span_id, module_id FROM per_load WHERE category <> 'clean'
UNION ALL
SELECT 'clocks_contradicted', load_span_id, module_id FROM per_load WHERE contradicted
UNION ALL
SELECT 'unmatched', l.load_span_id, l.module_id FROM matched l
WHERE l.creation IS NULL OR (l.creation.commit_ok IS NULL AND l.creation.cache_ok IS NULL)
UNION ALL
SELECT 'loads', CAST(count(*) AS VARCHAR), '' FROM loads
ORDER BY 1, 3, 2
