//go:build !windows

package mailer

import (
	"errors"
	"syscall"
)

// refused reports whether err is a refused TCP connection.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
