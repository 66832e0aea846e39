package replicator

import (
	"fmt"
	"strconv"
	"strings"
)

// snapshot is a pg_snapshot read from its text form, xmin:xmax:xip,...
// (https://www.postgresql.org/docs/15/functions-info.html#FUNCTIONS-PG-SNAPSHOT-PARTS).
type snapshot struct {
	xmin, xmax uint64
	xip        map[uint64]bool
}

func parseSnapshot(s string) (snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("invalid snapshot %q", s)
	}
	var sn snapshot
	var err error
	if sn.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("invalid snapshot %q", s)
	}
	if sn.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("invalid snapshot %q", s)
	}
	sn.xip = map[uint64]bool{}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return snapshot{}, fmt.Errorf("invalid snapshot %q", s)
			}
			sn.xip[v] = true
		}
	}
	return sn, nil
}

// visible reports whether transaction x had committed (or aborted) when the
// snapshot was taken, as pg_visible_in_snapshot does.
func (s snapshot) visible(x uint64) bool {
	return x < s.xmin || (x < s.xmax && !s.xip[x])
}

// covers reports whether every transaction visible in c is visible in p:
// then a change not visible in p is not visible in c either, and a table
// copied as of c that has caught up to p needs nothing more from the
// changes before p. A snapshot taken after c always covers it.
func covers(p, c snapshot) bool {
	if p.xmin < c.xmin {
		for x := p.xmin; x < c.xmin; x++ {
			if !p.visible(x) {
				return false
			}
		}
	}
	for x := max(c.xmin, p.xmin); x < c.xmax; x++ {
		if c.visible(x) && !p.visible(x) {
			return false
		}
	}
	return true
}
