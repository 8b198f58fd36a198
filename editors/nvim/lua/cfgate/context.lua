--- The text sent around the cursor with `cfgate/complete`: the daemon's
--- `completion_context_chars`, split as the daemon splits it for its own completions.
local M = {}

--- Lines from `row` on (forward) or before it (backward), joined, until more than
--- `limit` chars are gathered: enough to cut the context from.
local function gather(buf, row, first, forward, limit)
  local parts, chars = { first }, vim.fn.strchars(first)
  local count = vim.api.nvim_buf_line_count(buf)
  local r = forward and row + 1 or row - 1
  while chars <= limit and r >= 0 and r < count do
    local line = vim.api.nvim_buf_get_lines(buf, r, r + 1, false)[1]
    if forward then
      table.insert(parts, line)
    else
      table.insert(parts, 1, line)
    end
    chars = chars + vim.fn.strchars(line) + 1
    r = forward and r + 1 or r - 1
  end
  return table.concat(parts, "\n")
end

--- The daemon's context budget split as it splits it for plain-LSP completion: about
--- three quarters before the cursor, the rest after; a short side leaves its share to
--- the other; a cut side is cut at a line break, so no half line is sent.
function M.split(before, after, total)
  local before_len, after_len = vim.fn.strchars(before), vim.fn.strchars(after)
  local before_share = math.floor(total * 3 / 4)
  local before_budget = math.max(before_share, total - math.min(after_len, total - before_share))
  local after_budget = total - math.min(before_len, before_budget)
  local prefix, suffix = before, after
  if before_len > before_budget then
    prefix = vim.fn.strcharpart(before, before_len - before_budget)
    local nl = prefix:find("\n", 1, true)
    prefix = nl and prefix:sub(nl + 1) or prefix
  end
  if after_len > after_budget then
    suffix = vim.fn.strcharpart(after, 0, after_budget)
    local nl = suffix:match(".*()\n")
    suffix = nl and suffix:sub(1, nl) or suffix
  end
  return prefix, suffix
end

--- prefix/suffix around (row, col) of buf, within `total` chars.
function M.around(buf, row, col, total)
  local line = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ""
  local before = gather(buf, row, line:sub(1, col), false, total)
  local after = gather(buf, row, line:sub(col + 1), true, total)
  return M.split(before, after, total)
end

return M
