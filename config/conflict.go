package config

import (
	"fmt"
	"sort"
	"strings"
)

// ConflictPolicies are the values of on_conflict: what a logged row
// statement that touches no row on a slave does.
//
//   - stop: the slave stops at that transaction and waits for a person
//     (or `goreplica skip`);
//   - skip: the statement is dropped, the rest of its transaction applies;
//   - resync: the slave's row is made equal to the master's current row
//     (deleted when the master has none).
var ConflictPolicies = []string{"stop", "skip", "resync"}

func validPolicy(p string) bool {
	for _, v := range ConflictPolicies {
		if p == v {
			return true
		}
	}
	return false
}

func (r Replicate) validateConflicts() []error {
	var errs []error
	want := strings.Join(ConflictPolicies, ", ")
	if !validPolicy(r.OnConflict) {
		errs = append(errs, fmt.Errorf("replicate.on_conflict: %q is not a policy (one of %s)", r.OnConflict, want))
	}
	keys := make([]string, 0, len(r.OnConflictTables))
	for k := range r.OnConflictTables {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, _, ok := strings.Cut(k, "."); !ok {
			errs = append(errs, fmt.Errorf("replicate.on_conflict_tables.%q: must be schema.table (wildcard * allowed)", k))
		}
		if v := r.OnConflictTables[k]; !validPolicy(v) {
			errs = append(errs, fmt.Errorf("replicate.on_conflict_tables.%q: %q is not a policy (one of %s)", k, v, want))
		}
	}
	return errs
}
