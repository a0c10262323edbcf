package main

import (
	"context"
	"errors"
)

// subscribersCmd runs `newsletter subscribers import|export`.
func (a *App) subscribersCmd(ctx context.Context, args []string) error {
	return errors.New("subscribers: not implemented yet")
}
