;;; cfgate-test.el --- ERT tests of cfgate.el against the daemon and the fake gateway  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by editors/emacs/test/run.sh, which starts the fake gateway and sets
;; FAKE_GATEWAY_URL and CFGATE_BIN.  Waits poll `accept-process-output' with
;; deadlines; nothing sleeps a fixed time.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'subr-x)
(require 'cfgate)
(require 'cfgate-actions)

(defvar cfgate-test-url (or (getenv "FAKE_GATEWAY_URL")
                            (error "FAKE_GATEWAY_URL is not set (use test/run.sh)"))
  "The fake gateway's URL.")

(defconst cfgate-test-default-model "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
  "The daemon's default model.")

(setq cfgate-executable (or (getenv "CFGATE_BIN") (error "CFGATE_BIN is not set"))
      cfgate-settings `((base_url . ,(concat cfgate-test-url "/v1/acc/gw/compat"))))
;; A private daemon per test: a shared one would outlive Emacs by design.
(setq cfgate-server-args '("serve"))

;;;; Helpers

(defun cfgate-test--http (method path &optional body)
  "Call the fake's control endpoint PATH with METHOD and JSON BODY."
  (with-temp-buffer
    (let* ((args (append (list "-sS" "--fail" "--max-time" "10" "-X" method
                               (concat cfgate-test-url path))
                         (when body
                           (list "-H" "content-type: application/json"
                                 "--data-binary" (json-serialize body)))))
           (status (apply #'call-process "curl" nil t nil args)))
      (unless (eql status 0)
        (error "Curl %s %s failed (%s): %s" method path status (buffer-string)))
      (buffer-string))))

(defun cfgate-test--reset ()
  "Forget the fake's scripts and recorded requests."
  (cfgate-test--http "POST" "/__fake/reset"))

(defun cfgate-test--script (script)
  "Queue SCRIPT, a plist, at the fake."
  (cfgate-test--http "POST" "/__fake/script" script))

(defun cfgate-test--json (text)
  "Parse TEXT as JSON into plists and lists."
  (json-parse-string text :object-type 'plist :array-type 'list
                     :null-object nil :false-object :false))

(defun cfgate-test--chat-requests ()
  "The chat requests the fake received."
  (cl-remove-if-not (lambda (r) (string-match-p "/chat/completions" (plist-get r :path)))
                    (cfgate-test--json (cfgate-test--http "GET" "/__fake/requests"))))

(defun cfgate-test--stats ()
  "The fake's counters."
  (cfgate-test--json (cfgate-test--http "GET" "/__fake/stats")))

(defun cfgate-test--wait (what pred &optional timeout)
  "Process output until PRED returns non-nil; fail after TIMEOUT s waiting for WHAT."
  (let ((deadline (+ (float-time) (or timeout 15)))
        value)
    (while (not (setq value (funcall pred)))
      (when (> (float-time) deadline)
        (ert-fail (format "timed out after %s s waiting for %s" (or timeout 15) what)))
      (accept-process-output nil 0.02))
    value))

(defvar cfgate-test--messages nil
  "Messages shown while `cfgate-test--capture-messages' runs.")

(defun cfgate-test--record-message (format-string &rest args)
  "Record the message FORMAT-STRING with ARGS."
  (when format-string
    (push (apply #'format-message format-string args) cfgate-test--messages)))

(defmacro cfgate-test--capture-messages (&rest body)
  "Run BODY recording every `message' in `cfgate-test--messages'."
  (declare (indent 0))
  `(progn
     (setq cfgate-test--messages nil)
     (advice-add 'message :before #'cfgate-test--record-message)
     (unwind-protect (progn ,@body)
       (advice-remove 'message #'cfgate-test--record-message))))

(defun cfgate-test--find-message (needle)
  "The first recorded message containing NEEDLE."
  (cl-find-if (lambda (m) (string-search needle m)) cfgate-test--messages))

;;;; Tests (ERT runs them in name order)

(ert-deftest cfgate-test-01-missing-executable ()
  "A missing executable is a clear user error."
  (let ((cfgate-executable "/nonexistent/cfgate"))
    (cfgate-shutdown)
    (let ((err (should-error (cfgate-start) :type 'user-error)))
      (should (string-prefix-p "cfgate: executable not found" (cadr err))))
    (should-not (cfgate-running-p))))

(ert-deftest cfgate-test-01b-bad-setting ()
  "A settings key the daemon refuses is a clear user error, and no process stays."
  (cfgate-shutdown)
  (let* ((cfgate-settings (append cfgate-settings '((bogus . 1))))
         (err (should-error (cfgate-start) :type 'user-error)))
    (should (string-prefix-p "cfgate: the daemon could not start" (cadr err)))
    (should (string-search "bogus" (cadr err)))
    (should-not (cfgate-running-p))
    (should-not (process-live-p cfgate--process))))

(ert-deftest cfgate-test-01c-relay-says-why ()
  "A relay that cannot reach the shared daemon says why, from its stderr."
  (cfgate-shutdown)
  (let ((process-environment (cons "CFGATE_RUNTIME_DIR=/dev/null/cfgate" process-environment))
        (cfgate-server-args '("serve" "--shared")))
    (let ((err (should-error (cfgate-start) :type 'user-error)))
      (should (string-search "cfgate exited with code 1" (cadr err)))
      (should (string-search "cannot create /dev/null/cfgate" (cadr err))))
    (should-not (cfgate-running-p))))

(ert-deftest cfgate-test-02-status ()
  "The daemon starts with `cfgate-settings' and answers cfgate/status."
  (let ((status (cfgate-status)))
    (should (eq (plist-get status :credentials_complete) t))
    (should (equal (plist-get status :base_url)
                   (concat cfgate-test-url "/v1/acc/gw/compat")))
    (should (cfgate-running-p))))

(ert-deftest cfgate-test-03-chat-streams ()
  "`cfgate-chat' streams the answer into the chat buffer and keeps the history."
  (cfgate-test--reset)
  (let* ((buffer (cfgate-chat nil t))
         (changes 0))
    (with-current-buffer buffer
      (add-hook 'after-change-functions (lambda (&rest _) (cl-incf changes)) nil t))
    (cfgate-chat "hello there")
    (should (cfgate-chat-busy-p))
    (cfgate-test--wait "the answer"
                       (lambda () (and (not (cfgate-chat-busy-p))
                                       (with-current-buffer buffer
                                         (string-search "echo: hello there" (buffer-string))))))
    ;; One piece per word: several insertions, not one.
    (should (>= changes 4))
    (should (equal (with-current-buffer buffer (buffer-string))
                   "## You\n\nhello there\n\n## cfgate\n\necho: hello there\n\n## You\n\n"))
    (let ((requests (cfgate-test--chat-requests)))
      (should (= (length requests) 1))
      (should (eq (plist-get (plist-get (car requests) :body) :stream) t)))
    ;; The second turn sends the whole conversation.
    (cfgate-chat "how are you")
    (cfgate-test--wait "the second answer"
                       (lambda () (and (not (cfgate-chat-busy-p))
                                       (with-current-buffer buffer
                                         (string-search "echo: how are you" (buffer-string))))))
    (let* ((requests (cfgate-test--chat-requests))
           (messages (plist-get (plist-get (nth 1 requests) :body) :messages)))
      (should (= (length requests) 2))
      (should (= (length messages) 3))
      (should (equal (plist-get (nth 1 messages) :role) "assistant"))
      (should (equal (plist-get (nth 1 messages) :content) "echo: hello there"))
      (should (equal (plist-get (nth 2 messages) :content) "how are you")))))

(ert-deftest cfgate-test-04-complete-at-point ()
  "`cfgate-complete-at-point' offers the scripted completion."
  (cfgate-test--reset)
  (cfgate-test--script '(:content "compute(42)"))
  (with-temp-buffer
    (insert "local x = ")
    (let ((capf (cfgate-complete-at-point)))
      (should capf)
      (should (= (nth 0 capf) (point)))
      (should (= (nth 1 capf) (point)))
      (should (equal (nth 2 capf) '("compute(42)")))))
  ;; With a symbol before point, the candidate completes that symbol.
  (cfgate-test--script '(:content "ute(42)"))
  (with-temp-buffer
    (insert "local x = comp")
    (let ((capf (cfgate-complete-at-point)))
      (should (equal (nth 2 capf) '("compute(42)")))
      (should (equal (buffer-substring (nth 0 capf) (nth 1 capf)) "comp"))))
  (should (= (length (cfgate-test--chat-requests)) 2)))

(ert-deftest cfgate-test-04b-context-budget ()
  "The context follows the daemon's completion_context_chars, split as the daemon splits it."
  (cfgate-shutdown)
  (let ((cfgate-settings (append cfgate-settings '((completion_context_chars . 40)))))
    (unwind-protect
        (progn
          (cfgate-start)
          (cfgate-test--wait "the budget" (lambda () (eql cfgate--context-chars 40)))
          (with-temp-buffer
            (insert "first line here\nsecond line é\nthird x\nafter one\nafter two\nafter three")
            (goto-char (point-min))
            (search-forward "third ")
            (should (equal (cfgate-context-around (point))
                           '("second line é\nthird " . "x\n"))))
          (with-temp-buffer
            (insert (make-string 50 ?a) "zz")
            (should (equal (cfgate-context-around 51 40)
                           (cons (make-string 38 ?a) "zz")))))
      (cfgate-shutdown)
      (setq cfgate--context-chars nil))))

(ert-deftest cfgate-test-05-suggestion-accept ()
  "`cfgate-suggest' streams an overlay that `cfgate-accept-suggestion' inserts."
  (cfgate-test--reset)
  (cfgate-test--script '(:content "compute(42)"))
  (with-temp-buffer
    (insert "local x = ")
    (cfgate-suggest)
    (cfgate-test--wait "the suggestion"
                       (lambda () (and (cfgate-suggestion-done-p)
                                       (equal (cfgate-suggestion-text) "compute(42)"))))
    (let ((overlays (cl-remove-if-not (lambda (o) (overlay-get o 'cfgate))
                                      (overlays-in (point-min) (point-max)))))
      (should (= (length overlays) 1))
      (should (equal (substring-no-properties (overlay-get (car overlays) 'after-string))
                     "compute(42)"))
      (should (= (overlay-start (car overlays)) (point))))
    (should (equal (buffer-string) "local x = "))
    (should cfgate--suggestion-mode)
    (should (eq (key-binding (kbd "TAB")) #'cfgate-accept-suggestion))
    (cfgate-accept-suggestion)
    (should (equal (buffer-string) "local x = compute(42)"))
    (should (= (point) (point-max)))
    (should-not (cl-some (lambda (o) (overlay-get o 'cfgate))
                         (overlays-in (point-min) (point-max))))
    (should-not cfgate--suggestion-mode)))

(ert-deftest cfgate-test-05b-accept-word-and-line ()
  "Accepting a word or a line inserts exactly that part; the rest stays shown."
  (cfgate-test--reset)
  (cfgate-test--script '(:content "foo(bar, baz)\nreturn x"))
  (with-temp-buffer
    (insert "local v = ")
    (cfgate-suggest)
    (cfgate-test--wait "the suggestion"
                       (lambda () (and (cfgate-suggestion-done-p)
                                       (equal (cfgate-suggestion-text) "foo(bar, baz)\nreturn x"))))
    (should (eq (key-binding (kbd "M-<right>")) #'cfgate-accept-suggestion-word))
    (cfgate-accept-suggestion-word)
    (should (equal (buffer-string) "local v = foo"))
    (should (equal (cfgate-suggestion-text) "(bar, baz)\nreturn x"))
    (should (= (point) (point-max)))
    (cfgate-accept-suggestion-line)
    (should (equal (buffer-string) "local v = foo(bar, baz)"))
    (cfgate-accept-suggestion-line)
    (should (equal (buffer-string) "local v = foo(bar, baz)\nreturn x"))
    (should-not (cfgate-suggestion-text))
    (should (= (length (cfgate-test--chat-requests)) 1))))

(ert-deftest cfgate-test-05c-inline-error-one-line ()
  "An inline failure while typing is one line, shown once until it changes."
  (let ((cfgate-settings '((base_url . "http://127.0.0.1:9/v1") (max_attempts . 1))))
    (cfgate-shutdown)
    (setq cfgate--inline-error nil)
    (unwind-protect
        (cfgate-test--capture-messages
          (with-temp-buffer
            (insert "local z = ")
            (dotimes (_ 2)
              (cfgate-suggest)
              (cfgate-test--wait "the failure" (lambda () (not (cfgate-suggestion-text)))))
            (let ((shown (cl-remove-if-not (lambda (m) (string-prefix-p "cfgate: " m))
                                           cfgate-test--messages)))
              (should (= (length shown) 1))
              (should (string-prefix-p "cfgate: cannot connect" (car shown)))
              (should-not (string-search "\n" (car shown))))))
      (cfgate-shutdown))))

(ert-deftest cfgate-test-06-other-command-cancels ()
  "Any other command removes the suggestion and cancels its request."
  (cfgate-test--reset)
  (let ((dropped (plist-get (cfgate-test--stats) :streams_dropped)))
    (cfgate-test--script '(:hold_open t :chunks ["still_" "streaming"]))
    (with-temp-buffer
      (insert "foo(")
      (cfgate-suggest)
      (cfgate-test--wait "the request at the fake"
                         (lambda () (cfgate-test--chat-requests)))
      (should-not (cfgate-suggestion-done-p))
      ;; A command runs: pre-command-hook as the command loop runs it.
      (let ((this-command 'self-insert-command))
        (run-hooks 'pre-command-hook))
      (should-not (cfgate-suggestion-text))
      (should-not (cl-some (lambda (o) (overlay-get o 'cfgate))
                           (overlays-in (point-min) (point-max))))
      (cfgate-test--wait "the upstream stream to be dropped"
                         (lambda () (> (plist-get (cfgate-test--stats) :streams_dropped)
                                       dropped))))))

(ert-deftest cfgate-test-07-upstream-error-hint ()
  "An upstream error shows the message and the hint, not JSON."
  (cfgate-test--reset)
  (cfgate-set-model "@cf/google/gemini-2.0-flash")
  (unwind-protect
      (progn
        (should (equal (plist-get (cfgate-status) :model) "@cf/google/gemini-2.0-flash"))
        (cfgate-test--capture-messages
          (let ((buffer (cfgate-chat "hi" t)))
            (cfgate-test--wait "the error message"
                               (lambda () (cfgate-test--find-message "hint:")))
            (let ((shown (cfgate-test--find-message "hint:")))
              (should (string-prefix-p "cfgate: " shown))
              (should (string-search "\nhint: " shown))
              (should (string-search "google-ai-studio/" shown))
              (should (string-search "5007" shown))
              (should-not (string-search "{" shown)))
            (should-not (cfgate-chat-busy-p))
            (with-current-buffer buffer
              (should-not (string-search "## cfgate" (buffer-string)))
              (should (string-search "hi" (buffer-string))))))
        ;; Blocking requests signal a user-error with the same text.
        (let ((err (should-error (cfgate--request-sync
                                  :cfgate/chat (list :messages [(:role "user" :content "hi")]))
                                 :type 'user-error)))
          (should (string-search "\nhint: " (cadr err)))
          (should (string-search "google-ai-studio/" (cadr err)))))
    (cfgate-set-model cfgate-test-default-model)))

(ert-deftest cfgate-test-08-ask-region ()
  "`cfgate-ask-region' streams the answer about the region."
  (cfgate-test--reset)
  (let (buffer)
    (with-temp-buffer
      (insert "local a = 1\nlocal b = 2\nreturn a + b\n")
      (setq buffer (cfgate-ask-region (point-min)
                                      (save-excursion (goto-char (point-min))
                                                      (forward-line 2) (point))
                                      "explain this")))
    (cfgate-test--wait "the answer" (lambda () (not (cfgate-ask-busy-p))))
    (should (string-search "echo: explain this" (with-current-buffer buffer (buffer-string))))
    (let* ((body (plist-get (car (cfgate-test--chat-requests)) :body))
           (content (plist-get (car (last (plist-get body :messages))) :content)))
      (should (string-search "local a = 1\nlocal b = 2\n" content))
      (should-not (string-search "return a + b" content)))
    (kill-buffer buffer)))

(ert-deftest cfgate-test-09-inline-mode ()
  "`cfgate-inline-mode' asks for a suggestion after typing, once idle."
  (cfgate-test--reset)
  (cfgate-test--script '(:content "compute(42)"))
  (with-temp-buffer
    (cfgate-inline-mode 1)
    (insert "local x = ")
    (let ((this-command 'self-insert-command))
      (run-hooks 'post-command-hook))
    (should (timerp cfgate--idle-timer))
    ;; Run the idle timer's function as the command loop would once idle.
    (apply (timer--function cfgate--idle-timer) (timer--args cfgate--idle-timer))
    (cfgate-test--wait "the suggestion"
                       (lambda () (and (cfgate-suggestion-done-p)
                                       (equal (cfgate-suggestion-text) "compute(42)"))))
    (cfgate-accept-suggestion)
    (should (equal (buffer-string) "local x = compute(42)"))
    (cfgate-inline-mode -1)
    (should-not (memq #'cfgate--inline-post-command post-command-hook))))

(ert-deftest cfgate-test-10-shutdown ()
  "`cfgate-shutdown' ends the daemon; the next request starts it again."
  (cfgate-status)
  (let ((proc cfgate--process))
    (should (process-live-p proc))
    (cfgate-shutdown)
    (should-not (cfgate-running-p))
    (cfgate-test--wait "the process to end" (lambda () (not (process-live-p proc)))))
  (should (eq (plist-get (cfgate-status) :credentials_complete) t))
  ;; `cfgate-restart' ends the process and starts another one.
  (let ((proc cfgate--process))
    (cfgate-restart)
    (should (cfgate-running-p))
    (should-not (eq proc cfgate--process))
    (cfgate-test--wait "the old process to end" (lambda () (not (process-live-p proc)))))
  (cfgate-shutdown))

(defun cfgate-test--run (&rest args)
  "Run CFGATE_BIN with ARGS to its end; return (STATUS . OUTPUT)."
  (with-temp-buffer
    (let ((status (apply #'call-process cfgate-executable nil '(t nil) nil args)))
      (cons status (buffer-string)))))

(ert-deftest cfgate-test-11-sessions-shared ()
  "A session continues across Emacs and `cfgate chat --session' on the shared
daemon; only the new turn is sent; a daemon that ends mid-answer leaves the
error in the chat buffer."
  (cfgate-shutdown)
  (cfgate-test--reset)
  (let* ((dir (make-temp-file "cfgate-sessions" t))
         (process-environment
          (append (list (concat "CFGATE_RUNTIME_DIR=" dir "/run")
                        (concat "CFGATE_DATA_DIR=" dir "/data")
                        (concat "CFGATE_CONFIG=" dir "/config.toml"))
                  process-environment))
         (cfgate-server-args '("serve" "--shared"))
         (cfgate-settings nil))
    (with-temp-file (concat dir "/config.toml")
      (insert (format "base_url = \"%s/v1/acc/gw/compat\"\n" cfgate-test-url)))
    (unwind-protect
        (let ((buffer (cfgate-chat "first question" nil "proj")))
          (should (equal (buffer-name buffer) "*cfgate-chat: proj*"))
          (cfgate-test--wait "the first answer"
                             (lambda () (not (cfgate-chat-busy-p buffer))))
          ;; The shell continues the session ...
          (let ((run (cfgate-test--run "chat" "--session" "proj" "second question")))
            (should (equal run '(0 . "echo: second question\n"))))
          ;; ... and reopening it here shows that turn.
          (cfgate-chat nil nil "proj")
          (should (equal (with-current-buffer buffer (buffer-string))
                         (concat "## You\n\nfirst question\n\n## cfgate\n\necho: first question\n\n"
                                 "## You\n\nsecond question\n\n## cfgate\n\necho: second question\n\n"
                                 "## You\n\n")))
          (with-current-buffer buffer (cfgate-chat "third question"))
          (cfgate-test--wait "the third answer"
                             (lambda () (and (not (cfgate-chat-busy-p buffer))
                                             (with-current-buffer buffer
                                               (string-search "echo: third question"
                                                              (buffer-string))))))
          ;; Each turn went upstream once, with the whole history in front of it.
          (let* ((requests (cfgate-test--chat-requests))
                 (sent (mapcar (lambda (r)
                                 (mapcar (lambda (m) (concat (plist-get m :role) ": "
                                                             (plist-get m :content)))
                                         (plist-get (plist-get r :body) :messages)))
                               requests)))
            (should (= (length requests) 3))
            (should (equal (nth 0 sent) '("user: first question")))
            (should (equal (nth 2 sent) '("user: first question"
                                          "assistant: echo: first question"
                                          "user: second question"
                                          "assistant: echo: second question"
                                          "user: third question"))))
          ;; The shared daemon goes away mid-answer.
          (cfgate-test--script '(:hold_open t :chunks ["half " "an answer"]))
          (cfgate-test--capture-messages
            (with-current-buffer buffer (cfgate-chat "tell me"))
            (cfgate-test--wait "the first pieces"
                               (lambda () (with-current-buffer buffer
                                            (string-search "half an answer" (buffer-string)))))
            (should (equal (car (cfgate-test--run "stop")) 0))
            (cfgate-test--wait "the chat to end" (lambda () (not (cfgate-chat-busy-p buffer))))
            (should (string-prefix-p "cfgate: the daemon connection ended"
                                     (cfgate-chat-error-text buffer)))
            (should (string-search "half an answer" (with-current-buffer buffer (buffer-string))))
            (should (cfgate-test--find-message "the daemon connection ended")))
          (kill-buffer buffer))
      (cfgate-shutdown)
      (cfgate-test--run "stop")
      (delete-directory dir t))))

(ert-deftest cfgate-test-12-mode-line-and-status ()
  "The mode line follows the daemon's state; `cfgate-status' lists clients and sessions."
  (cfgate-test--reset)
  (cfgate-status)
  (should (equal (cfgate-mode-line) " cfgate:ready"))
  (cfgate-test--script '(:hold_open t :chunks ["wait"]))
  (let ((buffer (cfgate-chat "hold on" t)))
    (cfgate-test--wait "busy" (lambda () (equal (cfgate-mode-line) " cfgate:busy")))
    (with-current-buffer buffer (cfgate-chat-cancel))
    (cfgate-test--wait "ready" (lambda () (equal (cfgate-mode-line) " cfgate:ready"))))
  (let ((lines (cfgate--status-lines (cfgate-status))))
    (should (member (format "clients (1): Emacs %s" emacs-version) lines))
    (should (cl-some (lambda (l) (string-prefix-p "sessions: " l)) lines)))
  ;; The lighter is that text (batch Emacs has no frame to format a mode line in).
  (should (equal (cadr (assq 'cfgate-inline-mode minor-mode-alist)) '(:eval (cfgate-mode-line))))
  ;; Everywhere else, `cfgate-mode-line-mode' shows it (once per mode line).
  (cfgate-mode-line-mode 1)
  (unwind-protect
      (with-temp-buffer
        (should (equal (eval (cadr (cadr (assq 'cfgate-mode-line-mode minor-mode-alist))) t)
                       " cfgate:ready"))
        (cfgate-inline-mode 1)
        (should-not (eval (cadr (cadr (assq 'cfgate-mode-line-mode minor-mode-alist))) t)))
    (cfgate-mode-line-mode -1)))

(ert-deftest cfgate-test-12b-rate-limited ()
  "After a 429 the mode line says rate limited (its own face), the chat shows the
wait as a note, not answer text, and the answer follows; then the state is normal."
  (cfgate-test--reset)
  (cfgate-status)
  (cfgate-test--wait "ready" (lambda () (equal (cfgate-mode-line) " cfgate:ready")))
  (cfgate-test--script
   '(:status 429
     :body "{\"success\":false,\"errors\":[{\"code\":2003,\"message\":\"Rate limited\"}]}"
     :headers [["retry-after" "3"]]))
  (let* ((states nil)
         (watcher (lambda (_sym new _op _where) (push (plist-get new :state) states))))
    (add-variable-watcher 'cfgate--status watcher)
    (unwind-protect
        (cfgate-test--capture-messages
          (let ((buffer (cfgate-chat "wait for it" t)))
            (let ((shown (cfgate-test--wait
                          "the rate-limited mode line"
                          (lambda () (let ((m (cfgate-mode-line)))
                                       (and (equal m " cfgate:rate limited") m))))))
              (should (eq (get-text-property 1 'face shown) 'cfgate-rate-limited))
              (should (string-search "429" (get-text-property 1 'help-echo shown))))
            (let ((note (cfgate-test--wait "the waiting note in the chat"
                                           (lambda () (cfgate-chat-waiting-text buffer)))))
              (should (string-match-p "\\`cfgate: rate limited: waiting [0-9]+ s\\'" note)))
            (should (cfgate-test--find-message "cfgate: rate limited: waiting "))
            (should-not (string-search "rate limited"
                                       (with-current-buffer buffer (buffer-string))))
            ;; cfgate-status says so too, with the budget's cool-down.
            (let ((lines (cfgate--status-lines (cfgate-status))))
              (should (cl-some (lambda (l) (string-prefix-p "state: rate limited (" l)) lines))
              (should (cl-some (lambda (l) (string-search "rate limited: cooling down" l)) lines)))
            (cfgate-test--wait "the answer"
                               (lambda () (and (not (cfgate-chat-busy-p buffer))
                                               (with-current-buffer buffer
                                                 (string-search "echo: wait for it"
                                                                (buffer-string))))))
            (should (equal (with-current-buffer buffer (buffer-substring-no-properties
                                                        (point-min) (point-max)))
                           "## You\n\nwait for it\n\n## cfgate\n\necho: wait for it\n\n## You\n\n"))
            (should-not (cfgate-chat-waiting-text buffer))
            (cfgate-test--wait "ready again"
                               (lambda () (equal (cfgate-mode-line) " cfgate:ready")))
            (should-not (get-text-property 1 'face (cfgate-mode-line)))
            (should (= (length (cfgate-test--chat-requests)) 2))))
      (remove-variable-watcher 'cfgate--status watcher))
    ;; The rate-limited state came and something else followed it.
    (setq states (nreverse states))
    (should (member "rate_limited" states))
    (should-not (equal (car (last states)) "rate_limited"))))

(ert-deftest cfgate-test-13-code-actions ()
  "Fix and add docs show the daemon's edit for review and apply it; explain shows the answer."
  (cfgate-test--reset)
  (let (reviewed)
    (let ((cfgate-review-function (lambda (old new) (push (cons old new) reviewed) t))
          (done nil))
      (add-hook 'cfgate-action-done-hook (lambda () (setq done t)))
      (unwind-protect
          (with-temp-buffer
            (insert "before\nlet x = 1 +\nafter\n")
            (cfgate-test--script '(:content "let x = 1 + 2\n"))
            (cfgate-fix-region 8 20)
            (cfgate-test--wait "the fix" (lambda () done))
            (should (equal reviewed '(("let x = 1 +\n" . "let x = 1 + 2\n"))))
            (should (equal (buffer-string) "before\nlet x = 1 + 2\nafter\n"))
            ;; Add docs; then declining leaves the buffer as it was.
            (setq done nil reviewed nil)
            (cfgate-test--script '(:content "/// Two.\nlet x = 1 + 2\n"))
            (let ((cfgate-review-function (lambda (old new) (push (cons old new) reviewed) nil)))
              (cfgate-document-region 8 22)
              (cfgate-test--wait "the docs" (lambda () done)))
            (should (equal reviewed '(("let x = 1 + 2\n" . "/// Two.\nlet x = 1 + 2\n"))))
            (should (equal (buffer-string) "before\nlet x = 1 + 2\nafter\n"))
            (setq done nil)
            (cfgate-test--script '(:content "/// Two.\nlet x = 1 + 2\n"))
            (cfgate-document-region 8 22)
            (cfgate-test--wait "the docs again" (lambda () done))
            (should (equal (buffer-string) "before\n/// Two.\nlet x = 1 + 2\nafter\n"))
            ;; The default review shows the diff and asks.
            (setq done nil)
            (cfgate-test--script '(:content "let x = 1 + 3\n"))
            (let ((asked nil))
              (cl-letf (((symbol-function 'y-or-n-p)
                         (lambda (prompt)
                           (setq asked (cons prompt (with-current-buffer "*cfgate-diff*"
                                                      (buffer-string))))
                           t)))
                (let ((cfgate-review-function #'cfgate-review-edit))
                  (cfgate-fix-region 17 31)
                  (cfgate-test--wait "the reviewed fix" (lambda () done))))
              (should (equal (car asked) "cfgate: apply this edit? "))
              (should (string-search "-let x = 1 + 2\n+let x = 1 + 3\n" (cdr asked))))
            (should (equal (buffer-string) "before\n/// Two.\nlet x = 1 + 3\nafter\n"))
            ;; Explain.
            (setq done nil)
            (cfgate-test--script '(:content "It adds."))
            (cfgate-explain-region 8 (point-max))
            (cfgate-test--wait "the explanation" (lambda () done))
            (should (equal (with-current-buffer cfgate-ask-buffer-name (buffer-string)) "It adds.")))
        (setq cfgate-action-done-hook nil)))))

;;;; Model choice

(defun cfgate-test--model-requests ()
  "The model-list requests the fake received."
  (cl-remove-if-not (lambda (r) (and (equal (plist-get r :method) "GET")
                                     (string-match-p "/compat/models\\'" (plist-get r :path))))
                    (cfgate-test--json (cfgate-test--http "GET" "/__fake/requests"))))

(ert-deftest cfgate-test-14-select-model-offers-the-gateways-list ()
  "`cfgate-select-model' offers the daemon's `cfgate/models' list, the current model first."
  (cfgate-test--reset)
  (let (offered annotations prompt)
    (unwind-protect
        (progn
          (cl-letf (((symbol-function 'completing-read)
                     (lambda (p table &rest _)
                       (setq prompt p
                             offered (all-completions "" table))
                       (let ((annotate (completion-metadata-get
                                        (completion-metadata "" table nil) 'annotation-function)))
                         (setq annotations (mapcar (lambda (id) (funcall annotate id)) offered)))
                       "openai/gpt-5-mini")))
            (should (equal (cfgate-select-model) "openai/gpt-5-mini")))
          (should (= (length (cfgate-test--model-requests)) 1))
          (should (equal prompt (format "cfgate model (current %s): " cfgate-test-default-model)))
          (should (equal offered
                         (list (concat "workers-ai/" cfgate-test-default-model)
                               "workers-ai/@cf/google/gemma-4-26b-a4b-it"
                               "openai/gpt-5-mini"
                               "google-ai-studio/gemini-2.5-flash"
                               "anthropic/claude-sonnet-4-5")))
          (should (equal annotations
                         '("  (current), workers-ai, $0.29 in / $2.25 out per M tokens"
                           "  workers-ai, $0.1 in / $0.3 out per M tokens"
                           "  openai, $0.25 in / $2 out per M tokens"
                           "  google-ai-studio, $0.3 in / $2.5 out per M tokens"
                           "  anthropic")))
          (should (equal (plist-get (cfgate-status) :model) "openai/gpt-5-mini"))
          ;; A model the gateway does not list still comes first while it is current.
          (cfgate-set-model "dynamic/support")
          (cl-letf (((symbol-function 'completing-read)
                     (lambda (_p table &rest _)
                       (setq offered (all-completions "" table))
                       "")))
            (cfgate-select-model))
          (should (equal (car offered) "dynamic/support"))
          (should (= (length offered) 6))
          (should (equal (plist-get (cfgate-status) :model) "dynamic/support")))
      (cfgate-set-model cfgate-test-default-model))))

(ert-deftest cfgate-test-14b-select-model-error ()
  "A list that cannot be had is a user error with its message and hint; nothing is offered."
  (let ((cfgate-settings '((base_url . "http://127.0.0.1:9/v1") (max_attempts . 1)))
        (offered nil))
    (cfgate-shutdown)
    (unwind-protect
        (cl-letf (((symbol-function 'completing-read)
                   (lambda (&rest _) (setq offered t) "openai/gpt-5-mini")))
          (let ((err (should-error (cfgate-select-model) :type 'user-error)))
            (should (string-prefix-p
                     "cfgate: cannot connect to the gateway at http://127.0.0.1:9/v1/models"
                     (cadr err)))
            (should (string-search "\nhint: check the network and base_url" (cadr err))))
          (should-not offered))
      (cfgate-shutdown))))

(provide 'cfgate-test)
;;; cfgate-test.el ends here
