package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/goreplica/goreplica/pgserver"
	"github.com/goreplica/goreplica/pgserver/pgtest"
)

func TestStartAndDB(t *testing.T) {
	s := pgtest.Start(t, pgserver.Options{Settings: map[string]string{"max_prepared_transactions": "5"}})
	db := pgtest.DB(t, s, "app")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got, mpt string
	if err := db.QueryRowContext(ctx, "SELECT current_database(), current_setting('max_prepared_transactions')").Scan(&got, &mpt); err != nil {
		t.Fatal(err)
	}
	if got != "app" || mpt != "5" {
		t.Errorf("connected to %q with max_prepared_transactions=%s, want app and 5", got, mpt)
	}
}
