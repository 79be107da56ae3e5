-- Every version of every prompt the registry knows, numbered: what `tracehouse prompts list/show`, GET
-- /v1/prompts/NAME and llm_calls_scored.prompt_version_number read. A version is a content hash (`version`);
-- it is known from `prompts sync` (prompts, source 'sync') or from spans (prompt_observations, 'observed'),
-- or both (then 'sync': the file's text, front matter included, is the template).
-- version_number counts a name's versions by first appearance (first_seen: the sync's time or the first
-- span's, whichever is earlier; ties by hash), over every tenant, so "answer v7" means one content for
-- everyone (a tenant may see gaps: numbers taken by another tenant's observed versions). Numbers are
-- computed, not stored: they stay put as versions are added, unless a backfill brings spans older than a
-- version's first_seen, which renumbers the versions after it.
-- tenants: who has the version ('' = shared, from sync); a tenant sees its own and the shared ones.
CREATE OR REPLACE VIEW prompt_versions AS
SELECT
    name,
    toUInt32(row_number() OVER (PARTITION BY name ORDER BY first_seen, version)) AS version_number,
    version,
    first_seen,
    last_seen,
    source,
    template,
    body,
    front_matter,
    file_labels,
    file,
    tenants,
    calls
FROM (
    SELECT
        row_name AS name,
        row_version AS version,
        min(row_first_seen) AS first_seen,
        max(row_last_seen) AS last_seen,
        if(countIf(row_source = 'sync') > 0, 'sync', 'observed') AS source,
        argMax(row_template, (row_source = 'sync', length(row_template))) AS template,
        argMax(row_body, (row_source = 'sync', length(row_body))) AS body,
        max(row_front_matter) AS front_matter,
        argMax(row_file_labels, row_source = 'sync') AS file_labels,
        max(row_file) AS file,
        arraySort(groupUniqArray(row_tenant_id)) AS tenants,
        sum(row_calls) AS calls
    FROM (
        SELECT
            CAST(TenantId, 'String') AS row_tenant_id,
            Name AS row_name,
            Version AS row_version,
            FirstSeen AS row_first_seen,
            FirstSeen AS row_last_seen,
            'sync' AS row_source,
            Template AS row_template,
            Body AS row_body,
            FrontMatter AS row_front_matter,
            Labels AS row_file_labels,
            File AS row_file,
            toUInt64(0) AS row_calls
        FROM prompts
        UNION ALL
        SELECT
            CAST(TenantId, 'String') AS row_tenant_id,
            Name AS row_name,
            Version AS row_version,
            min(FirstSeen) AS row_first_seen,
            max(LastSeen) AS row_last_seen,
            'observed' AS row_source,
            max(Template) AS row_template,
            max(Template) AS row_body,
            '' AS row_front_matter,
            CAST([], 'Array(String)') AS row_file_labels,
            '' AS row_file,
            toUInt64(sum(Calls)) AS row_calls
        FROM prompt_observations
        GROUP BY TenantId, Name, Version
    )
    GROUP BY row_name, row_version
);
