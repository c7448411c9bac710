-- The five directives' core checks as an analyst would write them in SQL, for comparison
-- with `rulebook eval` (benches/duckdb/run.sh). Same parameters as the shipped policy set:
-- reports from 2020-02-07, epidemic period to 2020-05-01, the 2020 cycle July–December,
-- 20 verified hours. Prints the failing subjects per check.
CREATE TABLE members AS SELECT * FROM read_csv('members.csv', header = true, columns = {
  'member_id': 'VARCHAR', 'name': 'VARCHAR', 'branch_id': 'VARCHAR',
  'residence_community_id': 'VARCHAR', 'employment': 'VARCHAR'});
CREATE TABLE organizations AS SELECT * FROM read_csv('organizations.csv', header = true, columns = {
  'org_id': 'VARCHAR', 'name': 'VARCHAR', 'kind': 'VARCHAR', 'community_id': 'VARCHAR'});
CREATE TABLE reports AS SELECT * FROM read_csv('reports.csv', header = true, columns = {
  'member_id': 'VARCHAR', 'community_id': 'VARCHAR', 'reported_on': 'DATE', 'campaign': 'VARCHAR'});
CREATE TABLE filings AS SELECT * FROM read_csv('filings.csv', header = true, columns = {
  'member_id': 'VARCHAR', 'branch_id': 'VARCHAR', 'filed_on': 'DATE'});
CREATE TABLE assignments AS SELECT * FROM read_csv('assignments.csv', header = true, columns = {
  'member_id': 'VARCHAR', 'community_id': 'VARCHAR', 'grid_id': 'VARCHAR', 'team': 'VARCHAR',
  'assigned_on': 'DATE'});
CREATE TABLE services AS SELECT * FROM read_csv('services.csv', header = true, columns = {
  'service_id': 'VARCHAR', 'member_id': 'VARCHAR', 'community_id': 'VARCHAR',
  'start': 'TIMESTAMP', 'end': 'TIMESTAMP', 'category': 'VARCHAR', 'tasked_by': 'VARCHAR',
  'verified': 'BOOLEAN'});
CREATE TABLE checkins AS SELECT * FROM read_csv('checkins.csv', header = true, columns = {
  'member_id': 'VARCHAR', 'community_id': 'VARCHAR', 'at': 'TIMESTAMP'});
CREATE TABLE unit_attendance AS SELECT * FROM read_csv('unit_attendance.csv', header = true,
  columns = {'member_id': 'VARCHAR', 'date': 'DATE'});
CREATE TABLE org_registrations AS SELECT * FROM read_csv('org_registrations.csv', header = true,
  columns = {'org_id': 'VARCHAR', 'community_id': 'VARCHAR', 'registered_on': 'DATE'});

-- Each member's first epidemic report (start of their sinking period).
CREATE TABLE sinking AS
  SELECT member_id, min(reported_on) AS first_report FROM reports
  WHERE campaign = 'epidemic' AND reported_on >= DATE '2020-02-07' GROUP BY member_id;

SELECT 'epidemic-report: no report to residence community' AS check_name, count(*) AS failing
FROM members m WHERE NOT EXISTS (
  SELECT 1 FROM reports r WHERE r.member_id = m.member_id AND r.campaign = 'epidemic'
    AND r.reported_on >= DATE '2020-02-07' AND r.community_id = m.residence_community_id)
UNION ALL
SELECT 'two-teams: reported, never assigned', count(*)
FROM sinking s WHERE NOT EXISTS (SELECT 1 FROM assignments a WHERE a.member_id = s.member_id)
UNION ALL
SELECT 'two-teams: branch without work team at contact community', count(*)
FROM organizations o WHERE o.kind = 'unit_branch' AND NOT EXISTS (
  SELECT 1 FROM assignments a JOIN members m ON m.member_id = a.member_id
  WHERE m.branch_id = o.org_id AND a.team = 'work_team' AND a.community_id = o.community_id)
UNION ALL
SELECT 'discipline: unit attendance while sunk', count(DISTINCT u.member_id)
FROM unit_attendance u JOIN sinking s ON s.member_id = u.member_id
WHERE u.date >= s.first_report AND u.date <= DATE '2020-05-01'
UNION ALL
SELECT 'discipline: nominal (reported, no service)', count(*)
FROM sinking s WHERE NOT EXISTS (
  SELECT 1 FROM services v WHERE v.member_id = s.member_id
    AND v.start::DATE BETWEEN s.first_report AND DATE '2020-05-01')
UNION ALL
SELECT 'discipline: roll-call (sign-in days without service)', count(*) FROM (
  SELECT c.member_id FROM checkins c JOIN sinking s ON s.member_id = c.member_id
  WHERE c.at::DATE BETWEEN s.first_report AND DATE '2020-05-01'
    AND NOT EXISTS (SELECT 1 FROM services v WHERE v.member_id = c.member_id
                    AND v.start::DATE = c.at::DATE)
  GROUP BY c.member_id HAVING count(DISTINCT c.at::DATE) >= 1)
UNION ALL
SELECT 'dual-registration: no report in the cycle', count(*)
FROM members m WHERE NOT EXISTS (
  SELECT 1 FROM reports r WHERE r.member_id = m.member_id AND r.campaign = 'dual_registration'
    AND r.reported_on BETWEEN DATE '2020-07-01' AND DATE '2020-12-31')
UNION ALL
SELECT 'dual-registration: report never filed with own branch', count(*) FROM (
  SELECT r.member_id FROM reports r JOIN members m ON m.member_id = r.member_id
  WHERE r.campaign = 'dual_registration'
    AND r.reported_on BETWEEN DATE '2020-07-01' AND DATE '2020-12-31'
  GROUP BY r.member_id, m.branch_id HAVING NOT bool_or(EXISTS (
    SELECT 1 FROM filings f WHERE f.member_id = r.member_id AND f.branch_id = m.branch_id
      AND f.filed_on >= r.reported_on)))
UNION ALL
SELECT 'dual-registration: branch not registered', count(*)
FROM organizations o WHERE o.kind = 'unit_branch'
  AND NOT EXISTS (SELECT 1 FROM org_registrations g WHERE g.org_id = o.org_id)
UNION ALL
SELECT 'service-hours: under 20 verified hours in the cycle', count(*) FROM (
  SELECT m.member_id, coalesce(sum(epoch(v.end - v.start)) / 3600.0, 0) AS hours
  FROM members m LEFT JOIN services v ON v.member_id = m.member_id AND v.verified
    AND v.start >= TIMESTAMP '2020-07-01' AND v.start < TIMESTAMP '2021-01-01'
  GROUP BY m.member_id) WHERE hours < 20;
