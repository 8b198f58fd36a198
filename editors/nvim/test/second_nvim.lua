-- A second Neovim of the session test (cfgate_test.lua): opens the chat on the session
-- $CFGATE_SESSION through the shared daemon, sends $CFGATE_MESSAGE, writes the chat
-- buffer's lines to $CFGATE_OUT once the answer is in, stops its relay and quits.
local out = assert(os.getenv("CFGATE_OUT"))
local function finish(lines, code)
  local f = assert(io.open(out, "w"))
  f:write(table.concat(lines, "\n"))
  f:close()
  require("cfgate").stop(5000)
  vim.cmd(code == 0 and "qall!" or "cquit 1")
end
local errors = {}
vim.notify = function(msg)
  table.insert(errors, "notify: " .. tostring(msg))
end
vim.defer_fn(function()
  finish(vim.list_extend({ "timed out" }, errors), 1)
end, 60000)
require("cfgate").setup({ cmd = { os.getenv("CFGATE_BIN"), "serve", "--shared" } })
vim.api.nvim_create_autocmd("User", {
  pattern = "CfgateChatDone",
  once = true,
  callback = function()
    vim.schedule(function()
      finish(vim.list_extend(vim.api.nvim_buf_get_lines(0, 0, -1, false), errors), 0)
    end)
  end,
})
vim.cmd("CfgateChat session=" .. os.getenv("CFGATE_SESSION") .. " " .. os.getenv("CFGATE_MESSAGE"))
