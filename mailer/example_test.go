package mailer_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/goreplica/goreplica/mailer"
)

// The daemon's side: create the mailer at start, report events as they
// happen, and give the last mails a few seconds at stop.
func Example() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	m, err := mailer.New(mailer.Options{
		Host: "smtp.example.com", Username: "goreplica@example.com", Password: os.Getenv("SMTP_PASSWORD"),
		From: "goreplica@example.com", To: []string{"dba@example.com"},
		SubjectPrefix: "[goreplica]", MinInterval: 10 * time.Minute,
	}, logger)
	if err != nil {
		logger.Error("mail", "error", err)
		return
	}
	m.Notify(mailer.Event{Kind: mailer.KindStart, Summary: "goreplica started: paris -> lyon",
		Body: "master paris: host=db-paris dbname=shop password=xxxxx"})

	// A slave met a conflict; later it applies again.
	m.Notify(mailer.Apply{Slave: "lyon", Table: "public.orders", Key: "(id)=(42)", TxID: "81234",
		SQL: "UPDATE public.orders SET qty = 3 WHERE id = 42", Reason: "update_missing", Policy: "stop",
		ConfigPath: "/etc/goreplica/goreplica.toml"}.Event())
	m.Notify(mailer.Event{Kind: mailer.KindRecovered, Slave: "lyon", Summary: "lyon applying again"})

	m.Notify(mailer.Event{Kind: mailer.KindStop, Summary: "goreplica stopped (SIGTERM)"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		logger.Warn("mail", "error", err)
	}
}
