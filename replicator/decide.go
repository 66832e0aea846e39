package replicator

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// gidPrefix is the prefix of every two-phase GID goreplica uses for the
// batches of one (master, slave) pair. pg_prepared_xacts is cluster-wide, so
// the GID names the master by its random node id (not by DSN text, which
// differs from host to host) and the slave by its configured name, which is
// unique among the master's registered slaves.
func gidPrefix(masterID, slave string) string {
	return "goreplica." + strings.ReplaceAll(masterID, "-", "") + "." + slave + "."
}

// gid returns the GID of one batch.
func gid(masterID, slave string, batch int64) string {
	return gidPrefix(masterID, slave) + strconv.FormatInt(batch, 10)
}

// inDoubtAction is what to do with a prepared transaction found at start-up.
type inDoubtAction int

const (
	inDoubtIgnore inDoubtAction = iota // not ours: another master, slave or program
	inDoubtCommit                      // ours: it holds a whole batch and its position
)

// decideInDoubt decides the fate of a prepared transaction. A prepared batch
// of ours is always committed: it holds the batch's changes together with
// the position that covers them, and the master may already have purged the
// events (the acknowledgement is sent before COMMIT PREPARED), so rolling it
// back could lose them. Nothing else can hold the position row meanwhile, so
// no later batch can have been applied before it.
func decideInDoubt(g, masterID, slave string) (inDoubtAction, int64) {
	rest, ok := strings.CutPrefix(g, gidPrefix(masterID, slave))
	if !ok {
		return inDoubtIgnore, 0
	}
	b, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || b <= 0 {
		return inDoubtIgnore, 0
	}
	return inDoubtCommit, b
}

// backoff returns how long to wait before retry number attempt (1-based):
// 250ms doubling up to max.
func backoff(attempt int, max time.Duration) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// matchTable reports whether the catalog name schema.table matches pattern,
// where * matches any run of characters (including none) and every other
// character matches itself.
func matchTable(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(name, p)
		if i < 0 {
			return false
		}
		name = name[i+len(p):]
	}
	return strings.HasSuffix(name, parts[len(parts)-1])
}

// isExact reports whether a pattern names one table (no wildcard).
func isExact(pattern string) bool { return !strings.Contains(pattern, "*") }

// ConflictKind names why a logged row statement did not touch exactly one row.
type ConflictKind string

// The conflict kinds.
const (
	InsertExists  ConflictKind = "insert_exists"
	UpdateMissing ConflictKind = "update_missing"
	DeleteMissing ConflictKind = "delete_missing"
	MultipleRows  ConflictKind = "multiple_rows"
)

// classifyConflict names the conflict of a statement of kind op ('I', 'U',
// 'D') that affected n rows instead of one.
func classifyConflict(op byte, n int64) ConflictKind {
	switch {
	case n > 1:
		return MultipleRows
	case op == 'I':
		return InsertExists
	case op == 'U':
		return UpdateMissing
	default:
		return DeleteMissing
	}
}

// keyOf returns the key part of a logged statement for messages: the WHERE
// clause of an UPDATE or DELETE, the VALUES list of an INSERT.
func keyOf(sql string) string {
	if i := strings.LastIndex(sql, " WHERE "); i >= 0 && !strings.HasPrefix(sql, "INSERT") {
		return plainOperators(sql[i+len(" WHERE "):])
	}
	if _, v, _, ok := splitInsert(sql); ok {
		if len(v) > 200 {
			v = v[:200] + "...)"
		}
		return v
	}
	return ""
}

// plainOperators writes the schema-qualified operators of a logged key
// condition (id OPERATOR(pg_catalog.=) '7') as plain ones (id = '7'), for
// messages. Literals and quoted identifiers are left as they are.
func plainOperators(cond string) string {
	const op = " OPERATOR("
	var b strings.Builder
	for {
		i := indexOutside(cond, op)
		if i < 0 {
			b.WriteString(cond)
			return b.String()
		}
		if j := strings.Index(cond[i:], ") "); j > 0 {
			name := cond[i+len(op) : i+j]
			if k := strings.LastIndexByte(name, '.'); k >= 0 && !strings.ContainsAny(name, "'") {
				b.WriteString(cond[:i] + " " + name[k+1:] + " ")
				cond = cond[i+j+2:]
				continue
			}
		}
		b.WriteString(cond[:i+len(op)])
		cond = cond[i+len(op):]
	}
}

// shorten cuts s to n bytes for a log line or an error message.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d bytes)", len(s))
}

// splitInsert splits a logged INSERT, `INSERT INTO t (cols) [OVERRIDING
// SYSTEM VALUE] VALUES (vals) ON CONFLICT (key) DO NOTHING`, into its
// prefix (up to and including "VALUES "), its row "(vals)" and its suffix
// (" ON CONFLICT ..."), so that INSERTs with the same prefix and suffix can
// be joined into one multi-row INSERT. The prefix and the suffix hold only
// identifiers and keywords: the first " VALUES (" outside double quotes ends
// the prefix (an identifier may contain that text, quoted), and the suffix
// is read from the end. Logs written before the conflict target was named
// end with " ON CONFLICT DO NOTHING". ok is false for any other statement.
func splitInsert(sql string) (prefix, values, suffix string, ok bool) {
	if !strings.HasPrefix(sql, "INSERT INTO ") {
		return "", "", "", false
	}
	end := conflictClause(sql)
	if end < 0 {
		return "", "", "", false
	}
	const marker = " VALUES ("
	quoted := false
	for i := len("INSERT INTO "); i+len(marker) <= end; i++ {
		switch {
		case sql[i] == '"':
			quoted = !quoted
		case !quoted && sql[i] == '\'':
			return "", "", "", false // a literal before VALUES: not a logged INSERT
		case !quoted && strings.HasPrefix(sql[i:], marker):
			v := i + len(marker) - 1
			return sql[:v], sql[v:end], sql[end:], true
		}
	}
	return "", "", "", false
}

// conflictClause returns where the ON CONFLICT clause ending a logged INSERT
// starts (just after the closing parenthesis of its row), or -1. The
// clause is " ON CONFLICT DO NOTHING" or " ON CONFLICT (k1, "k 2") DO
// NOTHING"; the key list is read backwards, so that a quoted identifier
// holding parentheses or the clause's own words cannot mislead it.
func conflictClause(sql string) int {
	const tail, head = " DO NOTHING", " ON CONFLICT"
	rest, ok := strings.CutSuffix(sql, tail)
	if !ok {
		return -1
	}
	if strings.HasSuffix(rest, ")") {
		quoted := false
		i := len(rest) - 2
		for ; i >= 0; i-- {
			if rest[i] == '"' {
				quoted = !quoted
			} else if !quoted && rest[i] == '(' {
				break
			}
		}
		if i < 0 {
			return -1
		}
		rest = strings.TrimSuffix(rest[:i], " ")
	}
	rest, ok = strings.CutSuffix(rest, head)
	if !ok || !strings.HasSuffix(rest, ")") {
		return -1
	}
	return len(rest)
}

// checkSchemaVersion reports a replica schema that this goreplica does not
// run with: installed by an older goreplica (init upgrades it in place) or
// by a newer one.
func checkSchemaVersion(node string, installed int) error {
	switch {
	case installed < schemaVersion:
		return fmt.Errorf("%s: the replica schema is version %d, this goreplica needs %d: run 'goreplica init' to upgrade it", node, installed, schemaVersion)
	case installed > schemaVersion:
		return fmt.Errorf("%s: the replica schema is version %d, installed by a newer goreplica (this one runs with %d)", node, installed, schemaVersion)
	}
	return nil
}
