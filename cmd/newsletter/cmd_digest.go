package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/templates"
)

// digestCmd runs `newsletter digest preview|send`.
func (a *App) digestCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{"digest: want preview or send"}
	}
	switch args[0] {
	case "preview":
		return a.digestPreview(ctx, args[1:])
	case "send":
		return a.digestSend(ctx, args[1:])
	case "pause", "resume", "cancel":
		return a.digestIssueAction(ctx, args[0], args[1:])
	}
	return usageError{fmt.Sprintf("digest: unknown subcommand %q", args[0])}
}

// digestPreview prints the digest that would go out now for one language: the whole HTML
// document or the plain-text body, rendered for a reader without a name.
func (a *App) digestPreview(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("digest preview", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	lang := fs.String("lang", "en", "language of the digest")
	format := fs.String("format", "html", "html or text")
	if err := fs.Parse(args); err != nil {
		return usageError{"digest preview: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("digest preview: unexpected argument %q", fs.Arg(0))}
	}
	if *format != "html" && *format != "text" {
		return usageError{fmt.Sprintf("digest preview: --format %q: want html or text", *format)}
	}
	if !slices.Contains(a.cfg.Languages, *lang) {
		return usageError{fmt.Sprintf("digest preview: --lang %q is not one of NEWSLETTER_LANGUAGES", *lang)}
	}
	if err := a.open(ctx); err != nil {
		return err
	}
	renderer, err := a.digestRenderer()
	if err != nil {
		return err
	}
	store, err := a.digestStore()
	if err != nil {
		return err
	}
	iss, err := store.Assemble(ctx, *lang, a.cfg.DigestMaxArticles)
	if errors.Is(err, digest.ErrNoArticles) {
		return fmt.Errorf("digest preview: no new articles in %s since the last issue: %w", *lang, errNothing)
	}
	if err != nil {
		return err
	}
	c, err := store.Content(ctx, iss.ID, a.cfg.DigestMaxArticles)
	if errors.Is(err, digest.ErrNoArticles) {
		return fmt.Errorf("digest preview: every article of the %s issue is hidden: %w", *lang, errNothing)
	}
	if err != nil {
		return err
	}
	out, err := renderer.Render(c, previewRecipient(a.cfg.BaseURL))
	if err != nil {
		return err
	}
	if *format == "text" {
		_, err = io.WriteString(a.stdout, out.Text)
	} else {
		_, err = io.WriteString(a.stdout, out.HTML)
	}
	return err
}

// previewRecipient stands for a reader without a name, so the preview has the footer a reader
// gets; its links carry no valid token and change nothing when followed.
func previewRecipient(baseURL string) render.Recipient {
	return render.Recipient{UnsubscribeURL: baseURL + "/unsubscribe/preview", ManageURL: baseURL + "/manage/preview"}
}

// digestStore is the digest store of every command that assembles issues: the window rule's period
// comes from NEWSLETTER_DIGEST_SCHEDULE.
func (a *App) digestStore() (*digest.Store, error) {
	store := digest.NewStore(a.db, nil)
	if err := store.SetSchedule(digest.InZone(a.cfg.DigestSchedule, a.cfg.Timezone)); err != nil {
		return nil, err
	}
	store.SetLocation(a.cfg.Timezone)
	return store, nil
}

// digestRenderer builds the one Renderer of the digest from the settings; every command and
// serve use it for preview, test sends, real sends and the archive.
func (a *App) digestRenderer() (*render.Renderer, error) {
	return render.NewRenderer(templates.FS(a.cfg.TemplatesDir), a.catalog, render.Options{
		BaseURL:       a.cfg.BaseURL,
		SiteURL:       a.cfg.SiteURL,
		Publication:   a.cfg.Publication,
		PostalAddress: a.cfg.PostalAddress,
		From:          a.cfg.From,
	})
}
