"""Update tier: `copier update` from an older tagged version of the template.

- test_update.py: a clone of the working tree tagged 0.1.0 and, with a fix, 0.1.1.
- test_update_across_the_move.py: a clone with history, the layout before the celery/ and
  jobs/ move tagged 0.1.0, the working tree 0.2.0.
- clone.py: git with the tests' identity, the working tree copied into a clone, a service
  generated and committed, `copier update`, no conflict left.
"""
