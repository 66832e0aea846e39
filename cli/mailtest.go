package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/goreplica/goreplica/mailer"
)

// runMailTest sends one test mail with the [mail] section and prints the
// outcome of the SMTP conversation in one line.
func (c *CLI) runMailTest(ctx context.Context, args []string) error {
	cfg, err := c.load(args, nil)
	if err != nil {
		return err
	}
	if cfg.Mail == nil {
		return errors.New("mail-test: the configuration has no [mail] section (sample.toml documents it)")
	}
	line, err := mailer.Test(ctx, mailOptions(cfg.Mail))
	if err != nil {
		return fmt.Errorf("mail-test: %w", err)
	}
	fmt.Fprintln(c.Stdout, line)
	return nil
}
