package web

import (
	"context"
	"slices"
	"sync"
	"time"

	"newsletter/newsletters"
	"newsletter/subscribers"
)

// maxChoices bounds the newsletters one subscribe request may name.
const maxChoices = 32

// offersTTL is how long the subscribe form's list of newsletters is kept: the list changes when an
// editor edits a newsletter, and one query a half-minute keeps it off the subscribe path.
const offersTTL = 30 * time.Second

// offers caches the newsletters the subscribe form offers (on_form).
type offers struct {
	mu   sync.Mutex
	at   time.Time
	list []newsletters.Newsletter
}

func (h *Handler) formNewsletters(ctx context.Context) ([]newsletters.Newsletter, error) {
	h.offers.mu.Lock()
	defer h.offers.mu.Unlock()
	if h.offers.list != nil && time.Since(h.offers.at) < offersTTL {
		return h.offers.list, nil
	}
	all, err := newsletters.List(ctx, h.store.DB())
	if err != nil {
		return nil, err
	}
	list := []newsletters.Newsletter{}
	for _, n := range all {
		if n.OnForm {
			list = append(list, n)
		}
	}
	h.offers.list, h.offers.at = list, time.Now()
	return list, nil
}

// offerOption is one newsletter's checkbox on the subscribe form.
type offerOption struct {
	Slug, Name, Description string
	Checked                 bool
}

// offerOptions are the form's checkboxes in lang: ticked as the reader chose, or on a fresh form
// by default_on (a digest only on a form in its language).
func offerOptions(list []newsletters.Newsletter, lang string, in subscribeInput) []offerOption {
	var out []offerOption
	for _, n := range list {
		// A digest is one language's: ticked by default only on a form in its language.
		checked := n.DefaultOn && (n.Kind != newsletters.KindDigest || n.Lang == lang)
		if in.Chose {
			checked = slices.Contains(in.Newsletters, n.Slug)
		}
		out = append(out, offerOption{Slug: n.Slug, Name: n.Name(lang), Description: n.Descriptions.In(lang), Checked: checked})
	}
	return out
}

// chosenNewsletters turns the request's choice into newsletter ids: nil when the request made none
// (today's form and JSON: the digest of its language); a FieldError for an empty choice or a
// newsletter the form does not offer.
func (h *Handler) chosenNewsletters(ctx context.Context, in subscribeInput) ([]int64, error) {
	if !in.Chose {
		return nil, nil
	}
	if len(in.Newsletters) == 0 {
		return nil, &subscribers.FieldError{Field: "newsletters", Key: "subscribers.error.newsletters_none"}
	}
	if len(in.Newsletters) > maxChoices {
		return nil, &subscribers.FieldError{Field: "newsletters", Key: "subscribers.error.newsletters_unknown"}
	}
	list, err := h.formNewsletters(ctx)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, slug := range in.Newsletters {
		i := slices.IndexFunc(list, func(n newsletters.Newsletter) bool { return n.Slug == slug })
		if i < 0 {
			return nil, &subscribers.FieldError{Field: "newsletters", Key: "subscribers.error.newsletters_unknown"}
		}
		if !slices.Contains(ids, list[i].ID) {
			ids = append(ids, list[i].ID)
		}
	}
	return ids, nil
}
