// Finds the cfgate binary before vscode-languageclient is asked to start it, so a missing
// binary gets one clear message with a hint instead of a generic connection error.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

function isExecutableFile(file: string): boolean {
    try {
        if (!fs.statSync(file).isFile()) {
            return false;
        }
        if (process.platform !== 'win32') {
            fs.accessSync(file, fs.constants.X_OK);
        }
        return true;
    } catch {
        return false;
    }
}

/** `~/x` → the home directory's `x`. */
export function expandHome(command: string): string {
    return command === '~' || command.startsWith('~/') ? path.join(os.homedir(), command.slice(1)) : command;
}

/** The file `command` runs (a path, or a name looked up on PATH), or undefined. */
export function resolveExecutable(command: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
    const expanded = expandHome(command.trim());
    if (expanded === '') {
        return undefined;
    }
    const extensions =
        process.platform === 'win32' ? ['', ...(env.PATHEXT ?? '.EXE;.CMD;.BAT;.COM').split(';').filter(Boolean)] : [''];
    if (expanded.includes('/') || (process.platform === 'win32' && expanded.includes('\\'))) {
        const file = path.resolve(expanded);
        return extensions.map((ext) => file + ext).find(isExecutableFile);
    }
    const dirs = (env.PATH ?? env.Path ?? '').split(path.delimiter).filter(Boolean);
    for (const dir of dirs) {
        for (const ext of extensions) {
            const candidate = path.join(dir, expanded + ext);
            if (isExecutableFile(candidate)) {
                return candidate;
            }
        }
    }
    return undefined;
}
