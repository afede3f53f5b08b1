"""Update tier: `copier update` from an older tagged version of the template.

- clone.py: the throwaway git clone of the template that the tests tag and update from.
"""
