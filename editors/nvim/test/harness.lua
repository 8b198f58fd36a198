-- The headless-Neovim test harness shared by the plugin's tests (cfgate_test.lua) and the
-- plain-LSP tests (editors/lsp/test): a coroutine per test that yields to Neovim's main
-- loop while it waits, so typed keys, timers, autocommands and LSP messages all run for
-- real; the fake gateway's control endpoints; ok/not ok lines and the counts for run.sh.

local H = {}

H.url = assert(os.getenv("FAKE_GATEWAY_URL"), "FAKE_GATEWAY_URL is not set (use test/run.sh)")
H.bin = assert(os.getenv("CFGATE_BIN"), "CFGATE_BIN is not set (use test/run.sh)")
local result_file = os.getenv("CFGATE_TEST_RESULT")

function H.out(line)
  io.stdout:write(line .. "\n")
  io.stdout:flush()
end

-- Keep stderr quiet: no "-- INSERT --", no health progress messages.
vim.o.showmode = false
vim.o.shortmess = vim.o.shortmess .. "F"

-- Every vim.notify goes to H.notes (and is checked by the tests).
H.notes = {}
vim.notify = function(msg, level)
  table.insert(H.notes, { msg = tostring(msg), level = level })
end

-- The fake gateway's control endpoints --------------------------------------------------

local function http(method, path, body)
  local cmd = { "curl", "-sS", "--fail", "--max-time", "10", "-X", method, H.url .. path }
  if body ~= nil then
    vim.list_extend(cmd, { "-H", "content-type: application/json", "--data-binary", vim.json.encode(body) })
  end
  local r = vim.system(cmd, { text = true }):wait(15000)
  if r.code ~= 0 then
    error(("curl %s %s failed (%s): %s"):format(method, path, tostring(r.code), r.stderr or ""), 0)
  end
  return r.stdout
end

local fake = {}
H.fake = fake
function fake.reset()
  http("POST", "/__fake/reset")
end
function fake.script(script)
  http("POST", "/__fake/script", script)
end
function fake.requests()
  return vim.json.decode(http("GET", "/__fake/requests"))
end
function fake.chat_requests()
  return vim.tbl_filter(function(r)
    return r.path:find("/chat/completions", 1, true) ~= nil
  end, fake.requests())
end
function fake.stats()
  return vim.json.decode(http("GET", "/__fake/stats"))
end

-- A tiny coroutine test runner ------------------------------------------------------------

local tests = {}
local current_step
function H.test(name, fn)
  table.insert(tests, { name = name, fn = fn })
end

--- A test of a known defect (`why`): its failure is reported as "not ok - ... # TODO" and
--- not counted; once it passes it counts as a failure, so that the mark gets dropped.
function H.todo(name, why, fn)
  table.insert(tests, { name = name, fn = fn, todo = why })
end

--- Yields to the main loop for about ms milliseconds.
function H.pause(ms)
  vim.defer_fn(current_step, ms)
  coroutine.yield()
end

--- Polls cond (errors count as false) until it returns a truthy value, or fails.
function H.wait_for(what, cond, timeout)
  timeout = timeout or 15000
  local deadline = vim.uv.hrtime() + timeout * 1e6
  local last_err
  while true do
    local ok, v = pcall(cond)
    if ok and v then
      return v
    end
    if not ok then
      last_err = v
    end
    if vim.uv.hrtime() > deadline then
      error(("timed out after %d ms waiting for %s%s"):format(timeout, what, last_err and (" (" .. tostring(last_err) .. ")") or ""), 0)
    end
    H.pause(20)
  end
end

function H.check(cond, message, ...)
  if not cond then
    error(message:format(...), 2)
  end
end

function H.feed(keys, mode)
  vim.api.nvim_feedkeys(vim.keycode(keys), mode or "nt", false)
end

function H.mode()
  return vim.api.nvim_get_mode().mode
end

function H.buf_text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
end

function H.find_note(pattern)
  for _, n in ipairs(H.notes) do
    if n.msg:find(pattern, 1, true) then
      return n
    end
  end
end

function H.notes_text()
  return table.concat(
    vim.tbl_map(function(n)
      return n.msg
    end, H.notes),
    " | "
  )
end

local passed, failed = 0, 0

local function write_result()
  if result_file then
    local f = io.open(result_file, "w")
    if f then
      f:write(("%d %d\n"):format(passed, failed))
      f:close()
    end
  end
end

--- Runs the tests in order, then `at_end` (if given; it returns a list of failures as
--- messages), writes the counts and quits Neovim: status 0 only if all passed.
function H.run(at_end)
  -- Whole-run watchdog (run.sh also has a timeout).
  vim.defer_fn(function()
    H.out("not ok - the Neovim tests took over 200 s")
    failed = failed + 1
    write_result()
    vim.cmd("cquit 2")
  end, 200000)

  local function finish()
    for _, message in ipairs(at_end and at_end() or {}) do
      H.out("not ok - " .. message)
      failed = failed + 1
    end
    write_result()
    vim.cmd(failed == 0 and "qall!" or "cquit 1")
  end

  local function run(i)
    if i > #tests then
      return finish()
    end
    local t = tests[i]
    local co = coroutine.create(t.fn)
    local started = vim.uv.hrtime()
    local function step()
      if coroutine.status(co) ~= "suspended" then
        return
      end
      local ok, err = coroutine.resume(co)
      if not ok and t.todo then
        H.out(("not ok - %s # TODO %s: %s"):format(t.name, t.todo, tostring(err)))
        vim.schedule(function()
          run(i + 1)
        end)
      elseif not ok then
        failed = failed + 1
        H.out(("not ok - %s: %s"):format(t.name, tostring(err)))
        H.out("  " .. debug.traceback(co):gsub("\n", "\n  "))
        if #H.notes > 0 then
          H.out("  notifications: " .. H.notes_text())
        end
        vim.schedule(function()
          run(i + 1)
        end)
      elseif coroutine.status(co) == "dead" and t.todo then
        failed = failed + 1
        H.out(("not ok - %s passes now: drop its TODO mark (%s)"):format(t.name, t.todo))
        vim.schedule(function()
          run(i + 1)
        end)
      elseif coroutine.status(co) == "dead" then
        passed = passed + 1
        H.out(("ok - %s (%d ms)"):format(t.name, (vim.uv.hrtime() - started) / 1e6))
        vim.schedule(function()
          run(i + 1)
        end)
      end
    end
    current_step = step
    -- A clean slate: normal mode, no notifications.
    if H.mode():find("^i") then
      vim.cmd("stopinsert")
    end
    H.notes = {}
    step()
  end

  vim.schedule(function()
    run(1)
  end)
end

return H
