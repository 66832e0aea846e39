package mailer

import (
	"errors"
	"strings"
	"testing"
)

func TestApplyEvent(t *testing.T) {
	tests := []struct {
		name        string
		apply       Apply
		kind        Kind
		summary     string
		bodyHas     []string
		bodyHasNone []string
	}{
		{name: "conflict under stop",
			apply: Apply{Slave: "lyon", Table: "public.orders", Key: "(id)=(42)", TxID: "81234",
				SQL: "UPDATE public.orders SET qty = 3 WHERE id = 42", Reason: "update_missing", Policy: "stop",
				ConfigPath: "/etc/goreplica/goreplica.toml"},
			kind:    KindConflict,
			summary: "conflict on lyon: update_missing in public.orders (id)=(42)",
			bodyHas: []string{"slave:  lyon\n", "table:  public.orders\n", "key:    (id)=(42)\n", "txid:   81234\n",
				"reason: update_missing (the row to update is not on the slave)\n",
				"policy: stop: the batch was rolled back and lyon is halted",
				"statement:\nUPDATE public.orders SET qty = 3 WHERE id = 42\n",
				"next:\ngoreplica status -c /etc/goreplica/goreplica.toml\nFix the row on lyon",
				"goreplica skip -c /etc/goreplica/goreplica.toml --slave lyon --txid 81234"}},
		{name: "conflict under skip",
			apply:   Apply{Slave: "nantes", Table: "public.items", Key: "(sku)=('A''1')", Reason: "insert_exists", Policy: "skip"},
			kind:    KindConflict,
			summary: "conflict on nantes: insert_exists in public.items (sku)=('A''1')",
			bodyHas: []string{"reason: insert_exists (the row to insert is already on the slave)",
				"recorded in replica.conflicts on nantes", "check public.items on nantes against the master"},
			bodyHasNone: []string{"txid:"}},
		{name: "apply error with the operator's own next step",
			apply: Apply{Slave: "lyon", Table: "public.orders", Key: "(id)=(7)", TxID: "9",
				Err: errors.New(`pq: column "qty2" of relation "orders" does not exist`), Policy: "stop",
				Next: "add the column on lyon"},
			kind:        KindApplyError,
			summary:     `apply error on lyon: public.orders (id)=(7): pq: column "qty2" of relation "orders" does not exist`,
			bodyHas:     []string{`error:  pq: column "qty2"`, "next:\nadd the column on lyon\n"},
			bodyHasNone: []string{"reason:", "goreplica status"}},
		{name: "long statement is cut",
			apply:   Apply{Slave: "lyon", Table: "public.blobs", Reason: "delete_missing", SQL: "DELETE " + strings.Repeat("x", 10000)},
			kind:    KindConflict,
			summary: "conflict on lyon: delete_missing in public.blobs",
			bodyHas: []string{"more bytes not shown)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.apply.Event()
			if e.Kind != tt.kind || e.Slave != tt.apply.Slave || e.Summary != tt.summary {
				t.Errorf("event %s/%s %q, want %s/%s %q", e.Kind, e.Slave, e.Summary, tt.kind, tt.apply.Slave, tt.summary)
			}
			for _, want := range tt.bodyHas {
				if !strings.Contains(e.Body, want) {
					t.Errorf("body lacks %q:\n%s", want, e.Body)
				}
			}
			for _, not := range tt.bodyHasNone {
				if strings.Contains(e.Body, not) {
					t.Errorf("body has %q:\n%s", not, e.Body)
				}
			}
			if len(e.Body) > maxSQL+2000 {
				t.Errorf("body is %d bytes", len(e.Body))
			}
		})
	}
}
