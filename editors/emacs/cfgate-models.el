;;; cfgate-models.el --- Choose the model among those the gateway offers  -*- lexical-binding: t; -*-

;; Copyright (C) 2025 cfgate maintainers

;; Author: cfgate maintainers
;; SPDX-License-Identifier: MIT OR Apache-2.0

;; This file is not part of GNU Emacs.

;;; Commentary:

;; `cfgate-select-model' asks the daemon for the models the gateway offers
;; (`cfgate/models', docs/protocol.md) and offers them with `completing-read',
;; the current model first, each annotated with its owner, context window, tool
;; calling and price.  The package keeps no list of its own: only the gateway
;; knows which models this account can use (the daemon caches its answer for
;; 10 minutes).  Any other id can still be typed.

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'cfgate)

(defun cfgate--model-key (id)
  "ID, a Workers AI model's compat spelling (workers-ai/@cf/...) as @cf/...."
  (if (stringp id)
      (replace-regexp-in-string "\\`workers-ai/\\(@cf/\\)" "\\1" id)
    id))

(defun cfgate--same-model-p (a b)
  "Non-nil if model ids A and B name the same model."
  (equal (cfgate--model-key a) (cfgate--model-key b)))

(defun cfgate--model-details (model)
  "What the gateway says of MODEL, a `cfgate/models' entry, as one line.
For example \"workers-ai, 24000 tokens context, tools, $0.29 in / $2.25 out
per M tokens\"; a field the gateway does not give is left out."
  (let ((owner (plist-get model :owned_by))
        (context (plist-get model :context_window))
        (cost-in (plist-get model :cost_in))
        (cost-out (plist-get model :cost_out))
        (price (lambda (n) (if (numberp n) (format "$%g" n) "?"))))
    (string-join
     (delq nil
           (list (and (stringp owner) (not (string-empty-p owner)) owner)
                 (and (numberp context) (format "%d tokens context" context))
                 (and (eq (plist-get model :function_calling) t) "tools")
                 (and (or (numberp cost-in) (numberp cost-out))
                      (format "%s in / %s out per M tokens"
                              (funcall price cost-in) (funcall price cost-out)))))
     ", ")))

(defun cfgate--model-candidates (models current)
  "The choices for MODELS (a `cfgate/models' list) with CURRENT first.
An alist of (ID . ANNOTATION) in the daemon's order; CURRENT is listed
first (in the daemon's spelling when listed) and marked \"(current)\"."
  (let (found rest)
    (mapc (lambda (m)
            (let ((id (plist-get m :id)))
              (when (stringp id)
                (if (and current (not found) (cfgate--same-model-p id current))
                    (setq found (cons id (cfgate--model-details m)))
                  (push (cons id (cfgate--model-details m)) rest)))))
          models)
    (setq rest (nreverse rest))
    (if (not current)
        rest
      (let ((first (or found (cons current ""))))
        (cons (cons (car first)
                    (string-join (delete "" (list "(current)" (cdr first))) ", "))
              rest)))))

(defun cfgate--model-completion-table (candidates)
  "A completion table of CANDIDATES, (ID . ANNOTATION) pairs, kept in order."
  (let ((annotate (lambda (id)
                    (let ((note (cdr (assoc id candidates))))
                      (and note (not (string-empty-p note)) (concat "  " note))))))
    (lambda (string pred action)
      (if (eq action 'metadata)
          `(metadata (category . cfgate-model)
                     (annotation-function . ,annotate)
                     (display-sort-function . identity)
                     (cycle-sort-function . identity))
        (complete-with-action action candidates string pred)))))

;;;###autoload
(defun cfgate-select-model ()
  "Choose the model among those the gateway offers (`cfgate/models').
The current model comes first; any other id may be typed.  If the list
cannot be had, signal a `user-error' with its message and hint.  Return
the model chosen."
  (interactive)
  (let* ((current (plist-get (cfgate-status) :model))
         (result (cfgate--request-sync :cfgate/models (make-hash-table)))
         (candidates (cfgate--model-candidates (append (plist-get result :models) nil) current))
         (model (string-trim
                 (completing-read (format "cfgate model (current %s): " current)
                                  (cfgate--model-completion-table candidates)
                                  nil nil nil nil (car (car candidates))))))
    (unless (or (string-empty-p model) (cfgate--same-model-p model current))
      (cfgate-set-model model))
    model))

(provide 'cfgate-models)
;;; cfgate-models.el ends here
