// The benchmark scripts' command-line options: `--name value` pairs taken out of an argv array, so
// that what is left are the positional arguments.

/** The value after `name` in args (removing both), or dflt when name is absent. */
export function takeOption(args, name, dflt) {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
}
