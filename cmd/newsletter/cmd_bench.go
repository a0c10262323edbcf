package main

import (
	"context"
	"errors"
)

// benchCmd runs `newsletter bench send`.
func (a *App) benchCmd(ctx context.Context, args []string) error {
	return errors.New("bench: not implemented yet")
}
