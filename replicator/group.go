package replicator

// Grouping by table. A chunk of a TPC-B-like backlog interleaves tables
// (an account, a teller, a branch, a history row per transaction), so no two
// consecutive events could be joined and every one was a statement of its
// own. Where the slave applies with session_replication_role = replica, the
// chunk's events are put in table order before they are joined: within one
// table they keep their log order (so changes to one row stay in the
// master's order), and only changes to different tables change places. That
// cannot change the slave transaction's outcome: it is one transaction,
// checked as a whole at its commit, and what could see the order of
// changes to different tables in between (foreign-key checks and actions,
// ordinary triggers) does not run in replica mode. A TRUNCATE, which may
// empty several tables and cascade, keeps its place: the events before it
// and after it are grouped apart. Where the slave's role may not use
// replica mode its foreign-key checks run, and the log order is kept.
//
// Triggers a slave marks ENABLE ALWAYS or ENABLE REPLICA see the changes of
// a chunk grouped by table.

// groupByTable returns evs with the events between two TRUNCATEs sorted by
// table, stably, tables in the order they first appear.
func groupByTable(evs []event) []event {
	out := make([]event, 0, len(evs))
	for start := 0; start < len(evs); {
		end := start
		for end < len(evs) && evs[end].op != 'T' {
			end++
		}
		out = appendGrouped(out, evs[start:end])
		for end < len(evs) && evs[end].op == 'T' {
			out = append(out, evs[end])
			end++
		}
		start = end
	}
	return out
}

// appendGrouped appends seg to out, grouped by table.
func appendGrouped(out, seg []event) []event {
	var tables []string
	byTable := map[string][]int{}
	for i, e := range seg {
		if _, ok := byTable[e.table]; !ok {
			tables = append(tables, e.table)
		}
		byTable[e.table] = append(byTable[e.table], i)
	}
	for _, t := range tables {
		for _, i := range byTable[t] {
			out = append(out, seg[i])
		}
	}
	return out
}

// buffer holds an event until the chunk is built (grouped chunks), or adds
// it now. A big statement is never held: it goes alone.
func (c *chunk) buffer(e event) {
	if !c.group || c.exact || len(e.sql) > aloneBytes {
		c.add(e)
		return
	}
	c.pending = append(c.pending, e)
	c.pendingBytes += len(e.sql)
}

// build adds the held events, grouped by table.
func (c *chunk) build() {
	if len(c.pending) == 0 {
		return
	}
	for _, e := range groupByTable(c.pending) {
		c.add(e)
	}
	clear(c.pending)
	c.pending, c.pendingBytes = c.pending[:0], 0
}

// empty reports whether the chunk holds no event.
func (c *chunk) empty() bool { return len(c.events) == 0 && len(c.pending) == 0 }
